"""Celery tasks: thin, by name, through the one job wrapper (core.jobs.run_job).

Each task takes a job's id; run_job claims the row, heartbeats, records failures, and the
job kind's own function (registered by its app) does the work. Results never travel through
the broker: every job has a database row the UI reads. Domain code sends these by name
(core.jobs.enqueue) and never imports this module.
"""

from __future__ import annotations

from celery import shared_task

# Imports of Django code stay inside the tasks: this module is imported before Django's app
# registry is ready.


@shared_task(name="workers.tasks.build_snapshot")
def build_snapshot(snapshot_id: int) -> None:
    from core.jobs import run_job

    run_job("snapshot", snapshot_id)


@shared_task(name="workers.tasks.compute_quality_report")
def compute_quality_report(report_id: int) -> None:
    from core.jobs import run_job

    run_job("quality_report", report_id)


@shared_task(name="workers.tasks.train_run")
def train_run(run_id: int) -> None:
    from core.jobs import run_job

    run_job("training_run", run_id)


@shared_task(name="workers.tasks.sample_round")
def sample_round(job_id: int) -> None:
    from core.jobs import run_job

    run_job("sampling_job", job_id)


@shared_task(name="workers.tasks.judge_comparisons")
def judge_comparisons(job_id: int) -> None:
    from core.jobs import run_job

    run_job("judging_job", job_id)


@shared_task(name="workers.tasks.judge_comparisons_gpu")
def judge_comparisons_gpu(job_id: int) -> None:
    """The same work, sent to the gpu queue (reward-model judges)."""
    from core.jobs import run_job

    run_job("judging_job", job_id)


@shared_task(name="workers.tasks.run_evaluation")
def run_evaluation(evaluation_id: int) -> None:
    from core.jobs import run_job

    run_job("evaluation", evaluation_id)


@shared_task(name="workers.tasks.watchdog")
def watchdog() -> None:
    from core.jobs import watchdog as run_watchdog

    run_watchdog()
