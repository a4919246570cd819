"""Best-versus-worst sampling (issue 13 §6): K samples per prompt of the tiny model, a
programmatic judge picks the best and the worst of each prompt's K, and they open as one
comparison; every sample of a paired prompt is stored."""

from __future__ import annotations

import json

import pytest

from core.jobs import run_job
from judging.best_of import select_best_worst
from judging.services import add_judge
from labeling.importers import ImportKind, import_file
from labeling.models import Completion, Project, Prompt
from training import pairing
from training.forms import SamplingForm
from training.models import PairingMode, RunStatus, SamplingJob
from training.pairing import Candidates
from training.services import RunRefused, register_base_model, start_sampling

GENERATION = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 5}
RULES = "tests.training.test_best_worst_sampling"


def lowercase_letters(text: str) -> int:
    return sum("a" <= ch <= "z" for ch in text)


def prefer_more_lowercase(prompt: str, response_a: str, response_b: str) -> str:
    """The judge's rule: the response with more lowercase ASCII letters wins."""
    a, b = lowercase_letters(response_a), lowercase_letters(response_b)
    return "A" if a > b else "B" if b > a else "tie"


def always_first(prompt: str, response_a: str, response_b: str) -> str:
    """Prefers whichever response it is shown first: inconsistent in every pair."""
    return "A"


def always_tie(prompt: str, response_a: str, response_b: str) -> str:
    return "tie"


def broken(prompt: str, response_a: str, response_b: str) -> str:
    raise RuntimeError("the check crashed")


@pytest.fixture
def judging_rules(settings):
    settings.PREFLAB_JUDGE_CALLABLE_MODULES = ["judging.checks", RULES]


@pytest.fixture
def project(db):
    project = Project.objects.create(name="Best of K", overlap=1)
    prompts = "\n".join(json.dumps({"prompt": f"Question {i}: say hi."}) for i in range(6))
    import_file(project, prompts.encode(), "prompts.jsonl", ImportKind.PROMPTS)
    return project


def judge_of(project, name, function):
    return add_judge(project, name, "programmatic", {"callable": f"{RULES}.{function}"})


@pytest.mark.slow
def test_each_comparison_pairs_the_judges_best_and_worst_of_k(project, judging_rules, tiny_model):
    judge = judge_of(project, "lowercase", "prefer_more_lowercase")
    base = register_base_model(project, str(tiny_model), "tiny-base")
    job = start_sampling(
        project,
        base,
        pairing=PairingMode.BEST_WORST,
        samples_per_prompt=4,
        judge=judge,
        generation=GENERATION,
    )
    run_job("sampling_job", job.pk)
    job = SamplingJob.objects.get(pk=job.pk)
    assert job.status == RunStatus.SUCCEEDED, job.error
    assert job.comparisons_created >= 3
    dropped = (
        job.dropped_identical,
        job.dropped_empty,
        job.dropped_missing,
        job.dropped_judge_tie,
        job.dropped_judge_error,
    )
    assert job.comparisons_created + sum(dropped) == 6
    assert (job.dropped_missing, job.dropped_judge_error, job.dropped_empty) == (0, 0, 0)
    judged = job.comparisons_created + job.dropped_judge_tie
    assert job.judge_calls == judged * 4 * 3  # 6 pairs of 4, each in both orders
    comparisons = list(job.round.comparisons.select_related("completion_a", "completion_b"))
    assert len(comparisons) == job.comparisons_created
    for comparison in comparisons:
        stored = list(Completion.objects.filter(prompt=comparison.prompt))
        assert len(stored) == 4  # all K, only two of them in the comparison
        counts = [lowercase_letters(c.text) for c in stored]
        a, b = comparison.completion_a, comparison.completion_b
        pair = {lowercase_letters(a.text), lowercase_letters(b.text)}
        assert pair == {max(counts), min(counts)} and max(counts) > min(counts)
        roles = {c.generation_params["best_of"]["role"] for c in (a, b)}
        assert roles == {"best", "worst"}
        best = a if a.generation_params["best_of"]["role"] == "best" else b
        assert lowercase_letters(best.text) == max(counts)
        evidence = best.generation_params["best_of"]
        assert evidence["k"] == 4 and len(evidence["wins"]) == 4 and sum(evidence["wins"]) == 6
        others = [c for c in stored if c.pk not in (a.pk, b.pk)]
        assert {c.generation_params["best_of"]["role"] for c in others} == {"candidate"}
    # Prompts without a comparison stored nothing.
    paired = {c.prompt_id for c in comparisons}
    assert not Completion.objects.filter(prompt__project=project).exclude(prompt_id__in=paired)
    assert job.round.comparisons.count() == len(paired)


def test_the_selection_counts_ties_and_inconsistent_verdicts_half(project, judging_rules):
    prompt = Prompt.objects.filter(project=project).first()
    texts = ["abc", "A", "abcdef", "ab"]
    [selection] = select_best_worst(
        judge_of(project, "lowercase", "prefer_more_lowercase"), [Candidates(prompt, texts)]
    )
    assert (selection.best, selection.worst) == (2, 1)
    assert selection.wins == [2, 0, 3, 1] and selection.calls == 12 and not selection.error
    [first] = select_best_worst(
        judge_of(project, "first", "always_first"), [Candidates(prompt, texts)]
    )
    assert (first.best, first.worst, first.wins) == (None, None, [1.5] * 4)
    assert first.evidence["outcomes"] == {"inconsistent": 6}
    [tie] = select_best_worst(judge_of(project, "tie", "always_tie"), [Candidates(prompt, texts)])
    assert (tie.best, tie.worst) == (None, None) and not tie.error
    [error] = select_best_worst(judge_of(project, "broken", "broken"), [Candidates(prompt, texts)])
    assert error.best is None and "the check crashed" in error.error


def test_best_worst_sampling_is_refused_without_a_judge_or_a_valid_k(
    project, judging_rules, tmp_path
):
    base = register_base_model(project, str(tmp_path), "base")
    judge = judge_of(project, "lowercase", "prefer_more_lowercase")
    with pytest.raises(RunRefused, match="needs a judge") as refused:
        start_sampling(project, base, pairing=PairingMode.BEST_WORST)
    assert refused.value.key == "judge"
    for k in (2, 9):
        with pytest.raises(RunRefused, match="samples_per_prompt") as refused:
            start_sampling(
                project, base, pairing=PairingMode.BEST_WORST, samples_per_prompt=k, judge=judge
            )
        assert refused.value.key == "samples_per_prompt"
    other = Project.objects.create(name="Other")
    foreign = judge_of(other, "foreign", "prefer_more_lowercase")
    with pytest.raises(RunRefused, match="another project"):
        start_sampling(project, base, pairing=PairingMode.BEST_WORST, judge=foreign)
    assert not SamplingJob.objects.exists()


def test_without_the_judging_app_best_worst_is_refused(
    project, judging_rules, monkeypatch, tmp_path
):
    base = register_base_model(project, str(tmp_path), "base")
    judge = judge_of(project, "lowercase", "prefer_more_lowercase")
    # What an installation without the judging app looks like: nothing registered.
    monkeypatch.setattr(pairing, "_selector", None)
    with pytest.raises(RunRefused, match="judging app") as refused:
        start_sampling(project, base, pairing=PairingMode.BEST_WORST, judge=judge)
    assert refused.value.key == "judge"
    form = SamplingForm(project, form_data(pairing="best_worst", judge=judge.pk))
    assert not form.is_valid() and "judging app" in form.errors["judge"][0]


def form_data(**values):
    data = {
        "selection": "all",
        "pairing": "two_samples",
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 16,
        "seed": 0,
        "keep_empty": "on",
    }
    data.update(values)
    return data


def test_the_form_asks_for_k_and_a_judge_only_for_best_worst(project, judging_rules):
    judge = judge_of(project, "lowercase", "prefer_more_lowercase")
    assert SamplingForm(project, form_data()).is_valid()
    form = SamplingForm(project, form_data(pairing="best_worst", samples_per_prompt=4))
    assert not form.is_valid() and "Pick the judge" in form.errors["judge"][0]
    form = SamplingForm(project, form_data(pairing="best_worst", judge=judge.pk))
    assert not form.is_valid() and "samples_per_prompt" in form.errors
    form = SamplingForm(
        project, form_data(pairing="best_worst", judge=judge.pk, samples_per_prompt=9)
    )
    assert not form.is_valid() and "samples_per_prompt" in form.errors
    other = judge_of(Project.objects.create(name="Other"), "foreign", "prefer_more_lowercase")
    form = SamplingForm(
        project, form_data(pairing="best_worst", judge=other.pk, samples_per_prompt=4)
    )
    assert not form.is_valid() and "judge" in form.errors
    form = SamplingForm(
        project, form_data(pairing="best_worst", judge=judge.pk, samples_per_prompt=4)
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["judge"] == judge and form.cleaned_data["samples_per_prompt"] == 4
    html = SamplingForm(project).as_p()
    assert "lowercase" in html and 'value="best_worst"' in html


def rows_of(prompt, texts):
    return [{"id": prompt.id, "completion": text, "seed": 0} for text in texts]


def test_dropped_prompts_are_counted_by_why(project, judging_rules, tmp_path):
    from training.services import _pick_best_worst

    base = register_base_model(project, str(tmp_path), "base")
    prompts = list(Prompt.objects.filter(project=project).order_by("id"))
    texts = [
        ["abc", "A", "abcdef", "ab"],  # paired: abcdef against A
        ["x", "x", "x", "x"],  # identical
        ["abc"],  # missing: fewer than two samples
        ["", "", "ab", ""],  # empty: one distinct non-empty sample, keep_empty off
        ["ab", "cd", "ef", "gh"],  # judge tie: two letters each
        ["", "abc", "a", "ab"],  # paired among the three non-empty ones
    ]
    rows = [row for prompt, t in zip(prompts, texts, strict=True) for row in rows_of(prompt, t)]
    judge = judge_of(project, "lowercase", "prefer_more_lowercase")
    job = SamplingJob.objects.create(
        project=project,
        checkpoint=base,
        pairing=PairingMode.BEST_WORST,
        samples_per_prompt=4,
        judge=judge,
        keep_empty=False,
        generation={"seed": 0},
    )
    best_rows, worst_rows, extra, counts = _pick_best_worst(job, prompts, rows)
    assert counts == {
        "dropped_missing": 1,
        "dropped_identical": 1,
        "dropped_empty": 1,
        "dropped_judge_tie": 1,
        "dropped_judge_error": 0,
        "judge_calls": 12 + 12 + 6,
        "judge_tokens": 0,
    }
    pairs = [{a["completion"], b["completion"]} for a, b in zip(best_rows, worst_rows, strict=True)]
    assert pairs == [{"abcdef", "A"}, {"abc", "a"}]
    assert [row["completion"] for row in extra[prompts[5].id]] == ["", "ab"]
    assert extra[prompts[5].id][0]["best_of"]["role"] == "empty, not judged"

    job.judge = judge_of(project, "broken", "broken")
    _, _, _, counts = _pick_best_worst(job, prompts, rows_of(prompts[0], texts[0]))
    assert counts["dropped_judge_error"] == 1 and counts["dropped_missing"] == 5
