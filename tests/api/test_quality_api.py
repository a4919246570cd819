"""GET /api/v1/projects/{id}/quality: the cached figures as JSON, the 202 while computing,
scopes and roles."""

import pytest
from django.test import Client

from api.models import Scope
from api.tokens import create_token
from labeling.models import JobStatus, Project, QualityReport, Role
from labeling.quality.jobs import compute_quality_report, request_quality_report
from labeling.services import add_member
from tests.labeling.quality.db_crowd import BAD, quick_user, seed_crowd


@pytest.fixture
def crowd(make_project):
    crowd = seed_crowd(make_project, "Api crowd")
    for name, role in (("boss", Role.ADMIN), ("checker", Role.REVIEWER)):
        crowd.users[name] = quick_user(f"api-{name}")
        add_member(crowd.project, crowd.users[name], role)
    return crowd


def token(user, project, scopes=("read",)):
    return create_token(user, "t", list(scopes), [project]).secret


def get(client: Client, secret: str, project_id: int, query: str = ""):
    return client.get(
        f"/api/v1/projects/{project_id}/quality{query}", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


@pytest.mark.django_db
def test_no_figures_yet_answers_202_and_queues_one_computation(client, crowd):
    secret = token(crowd.users["checker"], crowd.project)
    answer = get(client, secret, crowd.project.pk)
    assert answer.status_code == 202
    body = answer.json()
    report = QualityReport.objects.get()
    assert body["report_id"] == report.pk and body["status"] == "queued"
    assert body["poll_url"].endswith(f"/api/v1/projects/{crowd.project.pk}/quality")
    assert get(client, secret, crowd.project.pk).status_code == 202
    assert QualityReport.objects.count() == 1


@pytest.mark.django_db
def test_the_figures_come_from_the_cached_report(client, crowd):
    report = compute_quality_report(request_quality_report(crowd.project).pk)
    answer = get(client, token(crowd.users["checker"], crowd.project), crowd.project.pk)
    assert answer.status_code == 200
    body = answer.json()
    assert body["report_id"] == report.pk
    assert body["vote_count"] == body["current_vote_count"] == 180
    assert body["stale"] is False and body["computing"] is None and body["round"] is None
    figures = body["figures"]
    assert figures == report.data
    assert set(figures["flagged"]) == crowd.ids(BAD)
    assert figures["project"]["agreement"]["alpha"] == report.data["project"]["agreement"]["alpha"]
    annotator = figures["annotators"][0]
    for key in (
        "reliability", "left_share", "left_ci_low", "left_p_value", "tie_rate", "both_bad_rate",
        "median_seconds", "fast_votes", "consensus_agreement", "gold_accuracy", "reasons",
    ):  # fmt: skip
        assert key in annotator
    section = figures["rounds"]["1"]
    assert {"agreement", "pairs", "position_bias", "length_bias", "model_win_rates"} <= set(section)
    assert section["model_win_rates"][0]["model"] == "good-model"


@pytest.mark.django_db
def test_a_round_query_reads_that_rounds_report(client, crowd):
    round_one = crowd.project.rounds.get(number=1)
    compute_quality_report(request_quality_report(crowd.project, round_one).pk)
    secret = token(crowd.users["checker"], crowd.project)
    answer = get(client, secret, crowd.project.pk, "?round=1")
    assert answer.status_code == 200 and answer.json()["round"] == 1
    missing = get(client, secret, crowd.project.pk, "?round=5")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"Project {crowd.project.pk} has no round 5."
    assert get(client, secret, crowd.project.pk, "?round=zero").status_code == 422


@pytest.mark.django_db
def test_annotators_get_403_and_outsiders_404(client, crowd):
    annotator = token(crowd.users["lefty"], crowd.project)
    answer = get(client, annotator, crowd.project.pk)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "insufficient_role"
    stranger = quick_user("api-stranger")
    other = Project.objects.create(name="Elsewhere")
    add_member(other, stranger, Role.ADMIN)
    assert get(client, token(stranger, other), crowd.project.pk).status_code == 404
    assert not QualityReport.objects.exists()


@pytest.mark.django_db
def test_a_token_without_the_read_scope_is_refused(client, crowd):
    secret = token(crowd.users["boss"], crowd.project, scopes=[Scope.EXPORT])
    answer = get(client, secret, crowd.project.pk)
    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == "This API token lacks the 'read' scope."


@pytest.mark.django_db
def test_stale_figures_are_returned_while_new_ones_are_queued(client, crowd):
    compute_quality_report(request_quality_report(crowd.project).pk)
    crowd.comparisons[0].votes.filter(annotator=crowd.users["dice"]).delete()
    body = get(client, token(crowd.users["boss"], crowd.project), crowd.project.pk).json()
    assert body["stale"] is True and body["current_vote_count"] == 179
    assert body["computing"]["status"] == JobStatus.QUEUED
