"""The whole loop with a real worker: vote, export, train, sample round 2, label it again."""

from __future__ import annotations

import pytest

from labeling.models import Comparison, JobStatus, Role, Snapshot
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import export_snapshot
from tests.conftest import make_user
from tests.workers.conftest import wait_for
from training.models import Checkpoint, RunMetric, RunStatus, SamplingJob, TrainingRun
from training.services import request_cancel, start_run, start_sampling

pytestmark = [pytest.mark.slow]

TINY_RUN = {
    "beta": 0.1,
    "learning_rate": 1e-3,
    "batch_size": 4,
    "micro_batch_size": 2,
    "max_steps": 3,
    "warmup_steps": 1,
    "max_length": 128,
    "max_prompt_length": 64,
    "eval_fraction": 0.0,
    "log_every": 1,
}


def labeled_project(make_project, tiny_model, pairs=8):
    annotator = make_user("looper")
    project = make_project("Loop", pairs=pairs, members={annotator: Role.ANNOTATOR})
    project.base_model = str(tiny_model)
    project.save()
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput("A", "clear"))
    return project, annotator


def ready_snapshot(project, worker) -> Snapshot:
    snapshot = export_snapshot(project, "every_vote")
    return wait_for(
        lambda: Snapshot.objects.filter(id=snapshot.id, status=JobStatus.SUCCEEDED).first(),
        120,
        "the snapshot",
        worker,
    )


def finished(run_id):
    def check():
        run = TrainingRun.objects.get(id=run_id)
        return run if run.is_finished else None

    return check


def test_vote_export_train_sample_and_label_round_two(start_worker, make_project, tiny_model):
    worker = start_worker()
    project, annotator = labeled_project(make_project, tiny_model)

    snapshot = ready_snapshot(project, worker)
    again = ready_snapshot(project, worker)
    assert snapshot.row_count == 8
    assert again.sha256 == snapshot.sha256

    base = Checkpoint.objects.get(project=project, run=None)
    run = start_run(snapshot, base, TINY_RUN)
    run = wait_for(finished(run.id), 300, "the training run", worker)
    assert run.status == RunStatus.SUCCEEDED, (run.error, worker.log())
    assert run.step == 3 and run.total_steps == 3
    assert RunMetric.objects.filter(run=run, split="train").count() == 3
    assert "reward_accuracy" in run.latest_metrics
    final = Checkpoint.objects.get(run=run, is_final=True)
    assert run.summary["steps"] == 3

    job = start_sampling(project, final, generation={"max_new_tokens": 24, "seed": 1})
    job = wait_for(
        lambda: (
            SamplingJob.objects.filter(id=job.id)
            .exclude(status=RunStatus.QUEUED)
            .exclude(status=RunStatus.RUNNING)
            .first()
        ),
        300,
        "the sampling job",
        worker,
    )
    assert job.status == RunStatus.SUCCEEDED, (job.error, worker.log())
    assert job.round.number == 2 and job.round.checkpoint == final
    assert job.comparisons_created + job.dropped_identical == 8
    assert job.comparisons_created > 0
    next_up = lease_next_comparison(annotator, project)
    assert next_up is not None and next_up.round.number == 2
    assert next_up.completion_a.checkpoint == final
    assert Comparison.objects.filter(round=job.round).count() == job.comparisons_created


def test_cancel_stops_a_run_with_a_checkpoint(start_worker, make_project, tiny_model):
    worker = start_worker()
    project, _ = labeled_project(make_project, tiny_model)
    snapshot = ready_snapshot(project, worker)
    base = Checkpoint.objects.get(project=project, run=None)
    run = start_run(snapshot, base, {**TINY_RUN, "max_steps": 100_000})
    wait_for(
        lambda: TrainingRun.objects.filter(id=run.id, step__gt=0).exists(), 180, "steps", worker
    )
    assert request_cancel(run)
    run = wait_for(finished(run.id), 120, "the cancelled run", worker)
    assert run.status == RunStatus.CANCELLED, (run.error, worker.log())
    assert Checkpoint.objects.filter(run=run).exists()
