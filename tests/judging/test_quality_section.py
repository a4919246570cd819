"""The judges' agreement beside the annotators: on the quality page and in the quality API."""

from __future__ import annotations

from django.urls import reverse

from api.models import Scope
from api.tokens import create_token
from judging.services import add_judge, run_judging
from labeling.models import Choice, JobStatus, Role
from labeling.quality.jobs import compute_quality_report, request_quality_report
from labeling.services import VoteInput, cast_vote, lease_next_comparison


def test_judges_are_on_the_quality_page_and_in_the_api(make_project, annotator, reviewer, client):
    project = make_project(pairs=3, members={annotator: Role.ANNOTATOR, reviewer: Role.REVIEWER})
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        cast_vote(annotator, project, comparison.id, VoteInput(Choice.A, "clear"))
    run_judging(
        add_judge(
            project,
            "short",
            "programmatic",
            {"callable": "tests.judging.callables.shorter_is_better"},
        ),
        scope="round",
        round=project.rounds.get(),
    )
    report = compute_quality_report(request_quality_report(project).pk)
    assert report.status == JobStatus.SUCCEEDED
    overall = next(j for j in report.data["judges"] if j["round_id"] is None)
    assert overall["judge"] == "short" and overall["agreement_with_humans"]["share"] == 1.0

    client.force_login(reviewer)
    page = client.get(reverse("labeling:quality", args=[project.pk])).content.decode()
    table = page.split('data-testid="judge-agreement"')[1].split("</table>")[0]
    assert "short" in table and "1.000 (" in table

    token = create_token(reviewer, "t", [Scope.READ], [project]).secret
    answer = client.get(
        f"/api/v1/projects/{project.pk}/quality", HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    judges = answer["figures"]["judges"]
    assert {j["judge"] for j in judges} == {"short"}
    assert "position_consistency" in judges[0]
