"""A judging job whose worker died is resumed by the watchdog and judges only what is left."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from core.jobs import get_kind, recover_stale, run_job
from judging.models import JudgeResult, JudgingJob
from judging.services import JUDGING_JOB, add_judge, request_judging, run_judging
from labeling.models import JobStatus, Vote, VoteSource


def test_a_lost_job_is_resumed_and_skips_the_judged_comparisons(make_project):
    project = make_project(pairs=4)
    judge = add_judge(
        project, "short", "programmatic", {"callable": "tests.judging.callables.shorter_is_better"}
    )
    # A first job judged everything; two of its results are taken back, as if the worker had
    # died before their batch committed.
    run_judging(judge)
    lost = list(JudgeResult.objects.order_by("id")[2:])
    Vote.objects.filter(comparison__in=[r.comparison_id for r in lost], judge=judge).delete()
    JudgeResult.objects.filter(pk__in=[r.pk for r in lost]).delete()

    job = request_judging(judge)
    stale = timezone.now() - timedelta(hours=1)
    JudgingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, worker="gone:1", heartbeat_at=stale, attempts=1
    )
    outcomes = recover_stale(get_kind(JUDGING_JOB))
    assert [(o.job_id, o.status) for o in outcomes] == [(job.pk, JobStatus.QUEUED)]

    ended = run_job(JUDGING_JOB, job.pk)
    assert ended.status == JobStatus.SUCCEEDED and ended.attempts == 2
    assert (ended.total, ended.done, ended.calls) == (4, 4, 4)  # 2 comparisons x 2 orders
    assert Vote.objects.filter(source=VoteSource.JUDGE, judge=judge).count() == 4
