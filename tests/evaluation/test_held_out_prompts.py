"""Held-out prompts: chosen at import or by a seeded hold-out, fixed once chosen, and never
sampled into a training round."""

from __future__ import annotations

import json

import pytest

from evaluation.services import EvaluationRefused, hold_out_prompts, split_counts
from labeling.importers import ImportFailed, ImportKind, import_file
from labeling.models import Project, Prompt, PromptSplit
from training.models import SamplingJob
from training.services import RunRefused, register_base_model, select_prompts, start_sampling


def prompts_file(count: int, split: str | None = None, start: int = 0) -> bytes:
    rows = []
    for index in range(start, start + count):
        row = {"prompt": f"prompt {index}"}
        if split is not None:
            row["split"] = split
        rows.append(json.dumps(row))
    return "\n".join(rows).encode()


@pytest.fixture
def bare_project(db):
    return Project.objects.create(name="Held out")


def test_import_chooses_the_split_and_fixes_it(bare_project):
    import_file(bare_project, prompts_file(3, "eval"), "eval.jsonl", ImportKind.PROMPTS)
    import_file(bare_project, prompts_file(2, "train", 10), "train.jsonl", ImportKind.PROMPTS)
    import_file(bare_project, prompts_file(5, None, 20), "open.jsonl", ImportKind.PROMPTS)
    assert split_counts(bare_project) == {"train": 7, "eval": 3, "undecided": 5}
    result = hold_out_prompts(bare_project, 40, seed=1)
    assert (result.candidates, result.held_out, result.kept) == (5, 2, 3)
    # chosen prompts never change again, whatever later hold-outs ask
    again = hold_out_prompts(bare_project, 90, seed=2)
    assert again.candidates == 0 and "nothing changed" in again.summary()
    assert Prompt.objects.filter(project=bare_project, split=PromptSplit.EVAL).count() == 5


def test_a_bad_split_in_an_import_is_refused_with_its_line(bare_project):
    data = b'{"prompt": "fine", "split": "eval"}\n{"prompt": "bad", "split": "test"}'
    with pytest.raises(ImportFailed) as failure:
        import_file(bare_project, data, "bad.jsonl", ImportKind.PROMPTS)
    assert "line 2" in str(failure.value) and "split" in str(failure.value)
    assert not Prompt.objects.filter(project=bare_project).exists()


def test_hold_out_is_deterministic_for_a_seed(db):
    chosen = []
    for name in ("one", "two"):
        project = Project.objects.create(name=name)
        import_file(project, prompts_file(50), "p.jsonl", ImportKind.PROMPTS)
        hold_out_prompts(project, 20, seed=5)
        chosen.append(
            sorted(
                Prompt.objects.filter(project=project, split=PromptSplit.EVAL).values_list(
                    "text", flat=True
                )
            )
        )
    assert chosen[0] == chosen[1] and len(chosen[0]) == 10


@pytest.mark.parametrize("percent", [0, 100, -5])
def test_hold_out_refuses_a_share_outside_0_to_100(bare_project, percent):
    with pytest.raises(EvaluationRefused, match="percent"):
        hold_out_prompts(bare_project, percent)


def test_held_out_prompts_are_never_sampled_into_a_training_round(bare_project):
    import_file(bare_project, prompts_file(30), "p.jsonl", ImportKind.PROMPTS)
    hold_out_prompts(bare_project, 50, seed=3)
    base = register_base_model(bare_project, "/models/base")
    for selection, limit in (("all", None), ("random", 15), ("fewest_votes", 15)):
        job = start_sampling(bare_project, base, selection=selection, prompt_limit=limit)
        picked = select_prompts(SamplingJob.objects.get(id=job.pk))
        assert picked and all(prompt.split == PromptSplit.TRAIN for prompt in picked)
    # the limit counts training prompts only
    with pytest.raises(RunRefused, match="prompt_limit"):
        start_sampling(bare_project, base, selection="random", prompt_limit=16)


def test_a_project_with_only_held_out_prompts_cannot_sample(bare_project):
    import_file(bare_project, prompts_file(3, "eval"), "p.jsonl", ImportKind.PROMPTS)
    base = register_base_model(bare_project, "/models/base")
    with pytest.raises(RunRefused, match="held-out"):
        start_sampling(bare_project, base)
