"""Run form defaults for the next round: the promoted checkpoint preselected, the reference
choice, the truncation count; the pipeline table's eval and win-rate columns; drop counts."""

from __future__ import annotations

import pytest
from django.template.defaultfilters import floatformat
from django.urls import reverse

from evaluation.services import apply_gate, get_results
from labeling.models import Prompt
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot
from tests.evaluation.support import child_checkpoint, evaluated
from training.forms import reference_for
from training.models import RunMetric, SamplingJob
from training.services import _open_round, register_base_model


@pytest.fixture
def lineage_world(project, annotator, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput("A", "clear"))
    snapshot = build_snapshot(request_snapshot(project, "every_vote").pk)
    base = register_base_model(project, "/models/base", "base")
    child = child_checkpoint(project, base, snapshot, "child")
    grandchild = child_checkpoint(project, child, snapshot, "grandchild")
    return project, snapshot, base, child, grandchild


def test_reference_choices(lineage_world):
    _, _, base, child, grandchild = lineage_world
    assert reference_for(grandchild, "start") is None
    assert reference_for(grandchild, "base") == base
    assert reference_for(grandchild, "previous") == child
    assert reference_for(base, "base") is None  # the base model is its own start
    with pytest.raises(ValueError, match="no previous"):
        reference_for(base, "previous")


def test_run_form_starts_from_the_promoted_checkpoint_and_counts_truncation(
    client, lineage_world, project_admin
):
    project, snapshot, base, child, _ = lineage_world
    evaluation = evaluated(project, child, base, win_share=0.9)
    assert apply_gate(evaluation).decision == "promoted"
    client.force_login(project_admin)
    page = client.get(reverse("training:run_create", args=[project.pk]))
    form = page.context["form"]
    assert form.initial["start_checkpoint"] == child.pk  # promoted beats the newer grandchild
    text = page.content.decode()
    assert "none of the 5 measured pairs is truncated" in text
    short = client.post(
        reverse("training:run_create", args=[project.pk]),
        {"snapshot": snapshot.pk, "start_checkpoint": child.pk, "reference": "base",
         "max_length": "40", "loss_type": "sigmoid", "beta": "0.1", "label_smoothing": "0",
         "learning_rate": "1e-4", "epochs": "1", "batch_size": "4", "micro_batch_size": "4",
         "warmup_steps": "0"},
    )  # fmt: skip
    assert short.status_code == 303, short.content.decode()[:3000]
    run = child.runs_started.latest("id")
    assert run.reference_checkpoint == base
    again = client.post(
        reverse("training:run_create", args=[project.pk]),
        {"snapshot": snapshot.pk, "start_checkpoint": base.pk, "reference": "previous",
         "max_length": "40", "loss_type": "sigmoid", "beta": "0.1", "label_smoothing": "0",
         "learning_rate": "1e-4", "epochs": "1", "batch_size": "4", "micro_batch_size": "4",
         "warmup_steps": "0"},
    )  # fmt: skip
    assert again.status_code == 400
    body = again.content.decode()
    assert "no previous round" in body and "may be truncated" in body


def test_pipeline_table_shows_eval_metrics_and_win_rate(client, lineage_world, reviewer):
    project, _, base, child, _ = lineage_world
    RunMetric.objects.create(
        run=child.run, split="eval", step=10,
        values={"loss": 0.4321, "reward_accuracy": 0.875, "reward_margin": 1.25},
    )  # fmt: skip
    evaluation = evaluated(project, child, base, win_share=0.9)
    win = get_results(evaluation)["opponents"][0]["win_rate"]
    client.force_login(reviewer)
    text = client.get(reverse("training:pipeline", args=[project.pk])).content.decode()
    assert "0.4321" in text and "0.875" in text and "1.250" in text
    table = text[text.find("runs-table") :][:3000]
    shown = [floatformat(win[key], 3) for key in ("estimate", "ci_low", "ci_high")]
    assert f"{shown[0]} [{shown[1]}, {shown[2]}] vs base" in table, table


@pytest.mark.parametrize(("keep_empty", "created", "empty"), [(True, 3, 0), (False, 2, 1)])
def test_sampling_counts_why_pairs_were_dropped(lineage_world, keep_empty, created, empty):
    project, _, base, _, _ = lineage_world
    prompts = list(Prompt.objects.filter(project=project)[:5])
    job = SamplingJob.objects.create(project=project, checkpoint=base, keep_empty=keep_empty)
    texts_a = ["ab", "cd", "x", "same", "q"]  # vs "z", "", "y", "same", (nothing)
    texts_b = ["z", "", "y", "same"]
    rows_a = [{"id": p.id, "completion": t} for p, t in zip(prompts, texts_a, strict=True)]
    rows_b = [{"id": p.id, "completion": t} for p, t in zip(prompts[:4], texts_b, strict=True)]
    made, dropped, _ = _open_round(job, prompts, [(base, rows_a), (base, rows_b)])
    assert made == created
    assert dropped == {"identical": 1, "empty": empty, "missing": 1}


def test_lineage_names_the_rounds_each_checkpoint_learned_from(lineage_world):
    from evaluation.services import lineage

    project, _, _, child, grandchild = lineage_world
    (root,) = lineage(project)
    assert root.checkpoint.name == "base" and root.trained_rounds == []
    (node,) = root.children
    assert node.checkpoint == child and node.trained_rounds == [1]
    assert [n.checkpoint for n in node.children] == [grandchild]
