"""A programmatic judge end to end: a project and a round, judging through the job core, the
judge votes in a snapshot; and what judge votes must never do to humans' numbers."""

from __future__ import annotations

import json

import pytest

from core.jobs import run_job
from judging.models import JudgingJob, JudgingScope
from judging.services import (
    JUDGING_JOB,
    JudgingTimeLimit,
    add_judge,
    request_cancel,
    request_judging,
    run_judging,
)
from labeling.models import Choice, Comparison, JobStatus, QualityReport, Role, Vote, VoteSource
from labeling.services import (
    VoteInput,
    cast_vote,
    get_annotator_progress,
    get_project_stats,
    lease_next_comparison,
)
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file


def judge_of(project, callable_path="tests.judging.callables.shorter_is_better", name="short"):
    return add_judge(project, name, "programmatic", {"callable": callable_path})


def test_a_round_judged_through_the_job_core_lands_in_a_snapshot(make_project):
    project = make_project(pairs=4)
    round_ = project.rounds.get()
    judge = judge_of(project)
    job = request_judging(judge, scope=JudgingScope.ROUND, round=round_)
    assert job.total == 4 and job.status == JobStatus.QUEUED

    ended = run_job(JUDGING_JOB, job.pk)

    assert ended.status == JobStatus.SUCCEEDED
    assert (ended.done, ended.consistent, ended.calls) == (4, 4, 8)
    votes = Vote.objects.filter(source=VoteSource.JUDGE, judge=judge)
    assert votes.count() == 4 and {v.choice for v in votes} == {Choice.A}
    # The quality figures (with the judges' agreement) are queued for recomputation.
    assert QualityReport.objects.filter(project=project, status=JobStatus.QUEUED).exists()
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    rows = [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]
    assert len(rows) == 4
    assert {row["vote_id"] for row in rows} == set(votes.values_list("id", flat=True))
    assert all(row["chosen"].startswith("It is") and "I think" not in row["chosen"] for row in rows)


def test_judging_again_at_the_same_version_skips_what_is_judged(make_project):
    project = make_project(pairs=3)
    judge = judge_of(project)
    run_judging(judge)
    again = run_judging(judge)
    assert (again.total, again.done, again.calls) == (3, 3, 0)
    assert Vote.objects.filter(judge=judge).count() == 3


def test_judge_votes_take_no_overlap_slot_and_stay_out_of_annotator_counts(
    make_project, annotator, project_admin
):
    project = make_project(pairs=2, overlap=1, members={annotator: Role.ANNOTATOR})
    run_judging(judge_of(project))
    assert set(Comparison.objects.values_list("vote_count", flat=True)) == {0}

    # The human overlap is whole: the annotator still votes on both comparisons.
    voted = 0
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput(Choice.B, "clear"))
        voted += 1
    assert voted == 2
    assert set(Comparison.objects.values_list("vote_count", flat=True)) == {1}
    assert get_annotator_progress(annotator, project).voted == 2
    stats = get_project_stats(project)
    assert [row["annotator__username"] for row in stats.per_annotator] == [annotator.username]
    assert (stats.votes, stats.decisive_votes) == (2, 2)  # the judge's two are not counted
    assert Vote.objects.filter(source=VoteSource.JUDGE).count() == 2


@pytest.mark.parametrize(
    ("path", "outcome"),
    [
        ("tests.judging.callables.cannot_decide", "unparseable"),
        ("tests.judging.callables.explodes", "errors"),
    ],
)
def test_a_check_that_cannot_decide_or_crashes_makes_no_vote(make_project, path, outcome):
    project = make_project(pairs=2)
    job = run_judging(judge_of(project, path))
    assert job.status == JobStatus.SUCCEEDED and getattr(job, outcome) == 2
    assert not Vote.objects.filter(source=VoteSource.JUDGE).exists()


def test_a_score_gives_a_margin(make_project):
    project = make_project(pairs=1)
    run_judging(judge_of(project, "tests.judging.callables.score_by_length"))
    vote = Vote.objects.get(source=VoteSource.JUDGE)
    assert vote.choice == Choice.A and 0 < vote.judge_output["margin"] <= 1


def test_a_callable_outside_the_allowed_modules_is_refused(make_project):
    project = make_project(pairs=1)
    with pytest.raises(ValueError, match="PREFLAB_JUDGE_CALLABLE_MODULES"):
        judge_of(project, "os.system")
    with pytest.raises(ValueError, match=r"config\.callable"):
        judge_of(project, "tests.judging.callables.no_such_function")


def test_a_queued_job_cancelled_never_runs(make_project):
    project = make_project(pairs=2)
    job = request_judging(judge_of(project))
    assert request_cancel(job).status == JobStatus.CANCELLED
    assert run_job(JUDGING_JOB, job.pk) is None
    assert not Vote.objects.filter(source=VoteSource.JUDGE).exists()


def test_a_running_job_stops_at_its_next_batch_when_cancelled(make_project):
    project = make_project(pairs=2)
    job = request_judging(judge_of(project))
    JudgingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    ended = run_job(JUDGING_JOB, job.pk)
    assert ended.status == JobStatus.CANCELLED and ended.done == 0


def test_one_active_job_per_judge(make_project):
    project = make_project(pairs=1)
    judge = judge_of(project)
    first = request_judging(judge)
    with pytest.raises(ValueError, match=f"already has judging job {first.pk}"):
        request_judging(judge)
    request_cancel(first)
    assert request_judging(judge).pk != first.pk


def test_the_total_time_limit_fails_the_job_and_a_rerun_judges_the_rest(make_project, settings):
    project = make_project(pairs=2)
    judge = judge_of(project)
    settings.PREFLAB_JUDGE_JOB_SECONDS = 0
    with pytest.raises(JudgingTimeLimit):
        run_judging(judge)
    failed = JudgingJob.objects.get()
    assert failed.status == JobStatus.FAILED and "PREFLAB_JUDGE_JOB_SECONDS" in failed.error
    settings.PREFLAB_JUDGE_JOB_SECONDS = 3600
    assert run_judging(judge).consistent == 2
