"""A worker killed mid-run never leaves the run stuck in "running"."""

from __future__ import annotations

import time

import pytest

from labeling.snapshots import build_snapshot, request_snapshot
from tests.workers.conftest import FAST_JOBS, wait_for
from tests.workers.test_job_recovery import WINDOW_SECONDS, kill_the_claimer, watchdog_worker
from tests.workers.test_loop import TINY_RUN, finished, labeled_project
from training.models import Checkpoint, RunStatus, TrainingRun
from training.services import run_out_dir, start_run

pytestmark = [pytest.mark.slow]


def test_sigkilled_worker_run_is_resumed_from_its_checkpoint(
    start_worker, make_project, tiny_model
):
    project, _ = labeled_project(make_project, tiny_model)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    base = Checkpoint.objects.get(project=project, run=None)
    workers = [start_worker(**FAST_JOBS), watchdog_worker(start_worker)]
    # Long enough that the kill at step 4 lands mid-run (it follows the step within a poll).
    config = {**TINY_RUN, "max_steps": 30, "save_every": 2}
    run = start_run(snapshot, base, config)
    wait_for(
        lambda: TrainingRun.objects.filter(id=run.id, step__gte=4).exists(),
        180,
        "a few training steps",
        workers[0],
    )
    # The engine gets SIGTERM when its worker dies (PR_SET_PDEATHSIG) and saves a checkpoint.
    killed_at, rescuer = kill_the_claimer(TrainingRun, run.id, workers, start_worker)
    wait_for(
        lambda: TrainingRun.objects.filter(id=run.id, attempts=2).exists(),
        60,
        "the watchdog to resume the run",
        rescuer,
    )
    assert time.monotonic() - killed_at < WINDOW_SECONDS
    run = wait_for(finished(run.id), 300, "the resumed run", rescuer)
    assert run.status == RunStatus.SUCCEEDED, (run.error, rescuer.log())
    assert run.attempts == 2
    assert run.step == 30
    engine_log = run_out_dir(TrainingRun.objects.get(id=run.id)) / "engine.log"
    assert "resum" in engine_log.read_text().lower()
