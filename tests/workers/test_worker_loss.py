"""A worker killed mid-run never leaves the run stuck in "running"."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from core.jobs import get_kind, recover_stale
from tests.workers.conftest import wait_for
from tests.workers.test_loop import TINY_RUN, finished, labeled_project, ready_snapshot
from training.models import Checkpoint, RunStatus, TrainingRun
from training.services import run_out_dir, start_run

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
        outcome = wait_for(
            lambda: recover_stale(get_kind("training_run")), 60, "the watchdog to notice"
        )
    assert outcome == [("training_run", run.id, RunStatus.QUEUED)]
    assert time.monotonic() - killed_at < 60

    second = start_worker()
    run = wait_for(finished(run.id), 300, "the resumed run", second)
    assert run.status == RunStatus.SUCCEEDED, (run.error, second.log())
    assert run.attempts == 2
    assert run.step == 400
    engine_log = run_out_dir(TrainingRun.objects.get(id=run.id)) / "engine.log"
    assert "resum" in engine_log.read_text().lower()
