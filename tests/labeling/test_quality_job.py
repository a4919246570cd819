"""The quality job: reads the project's human votes, computes every figure, caches them."""

import pytest

from core.jobs import get_kind
from labeling.models import JobStatus, QualityReport, Round, Vote, VoteSource
from labeling.quality import compute_quality
from labeling.quality.jobs import (
    COMPUTE_QUALITY_TASK,
    compute_quality_report,
    get_quality,
    load_votes,
    request_quality_report,
    thresholds_for,
)
from tests.labeling.quality.db_crowd import BAD, HONEST, seed_crowd, vote_row


@pytest.fixture
def crowd(make_project):
    return seed_crowd(make_project)


def computed(project, round_=None):
    report = request_quality_report(project, round_)
    finished = compute_quality_report(report.pk)
    assert finished is not None
    assert finished.status == JobStatus.SUCCEEDED, finished.error
    return finished


@pytest.mark.django_db
def test_the_quality_job_kind_is_registered_with_its_task():
    kind = get_kind("quality_report")
    assert kind.model is QualityReport
    assert kind.task_name == COMPUTE_QUALITY_TASK


@pytest.mark.django_db
def test_the_job_flags_exactly_the_bad_annotators_of_a_simulated_crowd(crowd):
    report = computed(crowd.project)
    assert report.vote_count == 30 * 6
    assert set(report.data["flagged"]) == crowd.ids(BAD)
    reasons = {row["annotator"]: " ".join(row["reasons"]) for row in report.data["annotators"]}
    assert "on the left in 100%" in reasons[crowd.users["lefty"].pk]
    assert "faster than the time needed to read" in reasons[crowd.users["speedy"].pk]
    assert "majority" in reasons[crowd.users["dice"].pk]
    assert all(reasons[crowd.users[name].pk] == "" for name in HONEST)
    assert report.data["annotator_names"][str(crowd.users["lefty"].pk)] == "crowd-lefty"
    assert report.log_tail == "done"


@pytest.mark.django_db
def test_the_cached_figures_equal_the_statistics_core_on_the_same_votes(crowd):
    report = computed(crowd.project)
    table = load_votes(crowd.project.pk)
    direct = compute_quality(table.frame, thresholds_for(crowd.project)).to_dict()
    assert report.data["project"]["agreement"] == direct["project"]["agreement"]
    assert report.data["annotators"] == direct["annotators"]
    assert report.data["project"]["length_bias"] == direct["project"]["length_bias"]
    assert set(report.data["rounds"]) == {"1"}
    # Lengths are the completions' lengths in characters, computed by the database.
    first = crowd.comparisons[0]
    row = table.frame[table.frame["comparison"] == first.pk].iloc[0]
    assert row["len_a"] == len(first.completion_a.text)
    assert row["seconds"] > 10


@pytest.mark.django_db
def test_judge_and_imported_votes_are_not_quality_figures(crowd):
    extra = vote_row(crowd.comparisons[0], None, "B", "A", 1000)
    extra.source, extra.imported_from = VoteSource.IMPORTED, "old.jsonl"
    extra.save()
    assert len(load_votes(crowd.project.pk).frame) == 30 * 6


@pytest.mark.django_db
def test_a_round_report_covers_only_that_round(crowd, make_project):
    from labeling.importers import ImportKind, import_file
    from tests.conftest import pairs_jsonl

    import_file(crowd.project, pairs_jsonl(3, "Later"), "more.jsonl", ImportKind.PAIRS)
    second = Round.objects.get(project=crowd.project, number=2)
    later = list(second.comparisons.select_related("completion_a", "completion_b"))
    Vote.objects.bulk_create(vote_row(c, crowd.users["honest0"], "A", "A", 20_000) for c in later)
    report = computed(crowd.project, second)
    assert report.round == second
    assert report.vote_count == 3
    assert set(report.data["rounds"]) == {"2"}
    whole = computed(crowd.project)
    assert whole.vote_count == 30 * 6 + 3
    assert set(whole.data["rounds"]) == {"1", "2"}


@pytest.mark.django_db
def test_a_second_request_while_one_is_queued_returns_the_same_report(crowd):
    first = request_quality_report(crowd.project)
    assert request_quality_report(crowd.project).pk == first.pk


@pytest.mark.django_db
def test_reading_queues_a_report_when_none_exists_or_the_votes_changed(crowd):
    cached = get_quality(crowd.project)
    assert cached.report is None and cached.computing is not None
    compute_quality_report(cached.computing.pk)
    fresh = get_quality(crowd.project)
    assert fresh.report is not None and fresh.computing is None and not fresh.stale
    Vote.objects.filter(annotator=crowd.users["dice"], comparison=crowd.comparisons[0]).delete()
    stale = get_quality(crowd.project)
    assert stale.stale and stale.report == fresh.report
    assert stale.computing is not None and stale.computing.status == JobStatus.QUEUED


@pytest.mark.django_db
def test_a_project_without_votes_gets_an_empty_report(make_project):
    project = make_project("Empty", pairs=2)
    report = computed(project)
    assert report.vote_count == 0 and report.data["votes"] == 0


@pytest.mark.django_db
def test_bad_stored_thresholds_fail_the_job_naming_the_key(crowd):
    crowd.project.quality_settings = {"max_tie_share": 0.2}
    crowd.project.save()
    report = request_quality_report(crowd.project)
    with pytest.raises(ValueError, match="max_tie_share"):
        compute_quality_report(report.pk)
    report.refresh_from_db()
    assert report.status == JobStatus.FAILED
    assert "unknown key(s) max_tie_share" in report.error


@pytest.mark.django_db
def test_project_thresholds_change_the_flags(crowd):
    crowd.project.quality_settings = {"max_fast_share": 1.0}
    crowd.project.save()
    report = computed(crowd.project)
    assert crowd.users["speedy"].pk not in report.data["flagged"]


@pytest.mark.django_db
def test_a_report_that_failed_on_these_votes_is_not_queued_again_by_reading(crowd):
    crowd.project.quality_settings = {"bogus": 1}
    crowd.project.save()
    cached = get_quality(crowd.project)
    with pytest.raises(ValueError):
        compute_quality_report(cached.computing.pk)
    again = get_quality(crowd.project)
    assert again.computing is None and again.failed is not None
    assert again.failed.vote_count == 30 * 6
    assert "bogus" in again.failed.error
