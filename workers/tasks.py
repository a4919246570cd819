"""Celery tasks: thin wrappers that take ids, call domain code and let it record state.

Results never travel through the broker; every job has a database row the UI reads.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="workers.tasks.build_snapshot")
def build_snapshot(snapshot_id: int) -> None:
    from labeling.snapshots import build_snapshot as build

    build(snapshot_id)


@shared_task(name="workers.tasks.train_run")
def train_run(run_id: int) -> None:
    from training.services import execute_run

    execute_run(run_id)


@shared_task(name="workers.tasks.sample_round")
def sample_round(job_id: int) -> None:
    from training.services import execute_sampling

    execute_sampling(job_id)


@shared_task(name="workers.tasks.watchdog")
def watchdog() -> None:
    from training.services import fail_lost_sampling_jobs, recover_lost_runs

    recover_lost_runs()
    fail_lost_sampling_jobs()
