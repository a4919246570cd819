"""A worker killed mid-run never leaves the run stuck in "running"."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.test import override_settings

from tests.workers.conftest import wait_for
from tests.workers.test_loop import TINY_RUN, finished, labeled_project, ready_snapshot
from training.models import Checkpoint, RunStatus, TrainingRun
from training.services import recover_lost_runs, start_run

pytestmark = [pytest.mark.slow]


def test_sigkilled_worker_run_is_resumed_from_its_checkpoint(
    start_worker, make_project, tiny_model
):
    worker = start_worker()
    project, _ = labeled_project(make_project, tiny_model)
    snapshot = ready_snapshot(project, worker)
    base = Checkpoint.objects.get(project=project, run=None)
    config = {**TINY_RUN, "max_steps": 400, "save_every": 2}
    run = start_run(snapshot, base, config)
    wait_for(
        lambda: TrainingRun.objects.filter(id=run.id, step__gte=4).exists(),
        180,
        "a few training steps",
        worker,
    )
    worker.kill()
    killed_at = time.monotonic()
    assert TrainingRun.objects.get(id=run.id).status == RunStatus.RUNNING

    # The watchdog (Celery beat in production) sees the heartbeat go stale.
    with override_settings(PREFLAB_HEARTBEAT_TIMEOUT_SECONDS=3, PREFLAB_LOST_RUN_POLICY="resume"):
        outcome = wait_for(lambda: recover_lost_runs(), 60, "the watchdog to notice")
    assert outcome == [(run.id, RunStatus.QUEUED)]
    assert time.monotonic() - killed_at < 60

    second = start_worker()
    run = wait_for(finished(run.id), 300, "the resumed run", second)
    assert run.status == RunStatus.SUCCEEDED, (run.error, second.log())
    assert run.attempts == 2
    assert run.step == 400
    engine_log = Path(TrainingRun.objects.get(id=run.id).out_dir) / "engine.log"
    assert "resum" in engine_log.read_text().lower()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "attempts", "expected"),
    [
        ("fail", 1, RunStatus.FAILED),
        ("resume", 1, RunStatus.QUEUED),
        ("resume", 3, RunStatus.FAILED),
    ],
)
def test_watchdog_applies_the_lost_run_policy(make_project, policy, attempts, expected, settings):
    from django.utils import timezone

    from labeling.models import JobStatus, Snapshot

    project = make_project("Lost", pairs=0)
    snapshot = Snapshot.objects.create(
        project=project, policy="every_vote", status=JobStatus.READY, row_count=1
    )
    base = Checkpoint.objects.create(project=project, name="base", path="/nowhere")
    run = TrainingRun.objects.create(
        project=project,
        snapshot=snapshot,
        start_checkpoint=base,
        status=RunStatus.RUNNING,
        attempts=attempts,
        heartbeat_at=timezone.now() - timezone.timedelta(minutes=10),
    )
    fresh = TrainingRun.objects.create(
        project=project,
        snapshot=snapshot,
        start_checkpoint=base,
        status=RunStatus.RUNNING,
        heartbeat_at=timezone.now(),
    )
    settings.PREFLAB_LOST_RUN_POLICY = policy
    settings.PREFLAB_MAX_RUN_ATTEMPTS = 3
    assert recover_lost_runs() == [(run.id, expected)]
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.status == expected
    assert "Worker lost" in run.error
    assert fresh.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_watchdog_fails_a_sampling_job_whose_worker_died(make_project):
    from django.utils import timezone

    from training.models import SamplingJob
    from training.services import fail_lost_sampling_jobs

    project = make_project("Lost sampling", pairs=0)
    checkpoint = Checkpoint.objects.create(project=project, name="ck", path="/nowhere")
    long_ago = timezone.now() - timezone.timedelta(minutes=10)
    lost = SamplingJob.objects.create(
        project=project, checkpoint=checkpoint, status=RunStatus.RUNNING, heartbeat_at=long_ago
    )
    alive = SamplingJob.objects.create(
        project=project,
        checkpoint=checkpoint,
        status=RunStatus.RUNNING,
        heartbeat_at=timezone.now(),
    )
    assert fail_lost_sampling_jobs() == [lost.id]
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == RunStatus.FAILED and "Worker lost" in lost.error
    assert alive.status == RunStatus.RUNNING
