"""The review workflow: the queue (split comparisons, gold failures, flags), adjudication,
resolving flags, excluding annotators and lifting it; who may see it."""

import pytest
from django.urls import reverse

from labeling.models import (
    Adjudication,
    AnnotatorExclusion,
    Choice,
    Comparison,
    FlagKind,
    FlagReason,
    ItemFlag,
    Role,
)
from labeling.review import excluded_annotator_ids
from labeling.services import VoteInput, cast_vote, set_aside_comparison
from tests.conftest import make_user


@pytest.fixture
def split(make_project, reviewer, project_admin, annotator):
    second = make_user("second_annotator")
    project = make_project(
        "Review project",
        pairs=2,
        overlap=2,
        members={
            project_admin: Role.ADMIN,
            reviewer: Role.REVIEWER,
            annotator: Role.ANNOTATOR,
            second: Role.ANNOTATOR,
        },
    )
    comparison = Comparison.objects.filter(project=project).order_by("id").first()
    cast_vote(annotator, project, comparison.id, VoteInput("A", "strong", "A is right"))
    cast_vote(second, project, comparison.id, VoteInput("B", "slight", "B reads better"))
    return project, comparison, second


def test_split_comparison_is_in_the_queue_with_every_vote(client, split, reviewer):
    project, comparison, _ = split
    client.force_login(reviewer)
    queue = client.get(reverse("labeling:review", args=[project.id]))
    assert queue.status_code == 200
    assert f"#{comparison.id}".encode() in queue.content
    assert b"A is right" in queue.content and b"B reads better" in queue.content
    page = client.get(reverse("labeling:review_comparison", args=[project.id, comparison.id]))
    html = page.content.decode()
    for text in (
        "annotator_person",
        "second_annotator",
        "Strongly",
        "Slightly",
        "A is right",
        "B reads better",
    ):
        assert text in html


def test_adjudication_is_recorded_editable_and_leaves_the_queue(
    client, split, reviewer, project_admin
):
    project, comparison, _ = split
    client.force_login(reviewer)
    url = reverse("labeling:adjudicate", args=[project.id, comparison.id])
    assert client.post(url, {"choice": "A", "note": "A follows the guidelines"}).status_code == 303
    decision = Adjudication.objects.get(comparison=comparison)
    assert (decision.choice, decision.note, decision.reviewer) == (
        Choice.A,
        "A follows the guidelines",
        reviewer,
    )
    client.force_login(project_admin)
    client.post(url, {"choice": "tie", "note": "On reflection"})
    decision.refresh_from_db()
    assert (decision.choice, decision.reviewer) == (Choice.TIE, project_admin)
    assert Adjudication.objects.count() == 1
    queue = client.get(reverse("labeling:review", args=[project.id]))
    assert queue.context["queue"].split_total == 0
    bad = client.post(url, {"choice": "C"})
    assert bad.status_code == 400 and b"Select a valid choice" in bad.content


def test_flag_is_resolved_once(client, split, reviewer, annotator):
    project, _, _ = split
    other = Comparison.objects.filter(project=project).order_by("id").last()
    flag = set_aside_comparison(annotator, project, other.id, FlagKind.FLAG, FlagReason.UNREADABLE)
    client.force_login(reviewer)
    url = reverse("labeling:resolve_flag", args=[project.id, flag.id])
    assert client.post(url, {"resolution": ""}).status_code == 400
    assert client.post(url, {"resolution": "Text is fine"}).status_code == 303
    flag.refresh_from_db()
    assert flag.resolved_by == reviewer and flag.resolution == "Text is fine"
    queue = client.get(reverse("labeling:review", args=[project.id])).context["queue"]
    assert queue.flags_total == 0


def test_exclusion_is_recorded_and_lifted_with_who_and_why(client, split, reviewer, annotator):
    project, _, _ = split
    client.force_login(reviewer)
    url = reverse("labeling:exclusions", args=[project.id])
    assert client.post(url, {"annotator": annotator.pk, "reason": ""}).status_code == 400
    assert (
        client.post(url, {"annotator": annotator.pk, "reason": "Always picks left"}).status_code
        == 303
    )
    assert excluded_annotator_ids(project) == {annotator.pk}
    again = client.post(url, {"annotator": annotator.pk, "reason": "twice"})
    assert again.status_code == 400 and b"already excluded" in again.content
    exclusion = AnnotatorExclusion.objects.get()
    lift = reverse("labeling:lift_exclusion", args=[project.id, exclusion.id])
    assert client.post(lift, {"lift_reason": ""}).status_code == 400
    assert client.post(lift, {"lift_reason": "Retrained"}).status_code == 303
    exclusion.refresh_from_db()
    assert exclusion.lifted_by == reviewer and exclusion.lift_reason == "Retrained"
    assert excluded_annotator_ids(project) == set()
    page = client.get(url).content.decode()
    assert "Always picks left" in page and "Retrained" in page and "reviewer_person" in page


def test_only_admins_mark_gold(client, split, reviewer, project_admin):
    project, comparison, _ = split
    url = reverse("labeling:set_gold", args=[project.id, comparison.id])
    client.force_login(reviewer)
    assert client.post(url, {"gold_choice": "A"}).status_code == 403
    client.force_login(project_admin)
    assert client.post(url, {"gold_choice": "A"}).status_code == 303
    comparison.refresh_from_db()
    assert comparison.is_gold and comparison.gold_choice == Choice.A


REVIEW_PAGES = [
    ("review", "get", False),
    ("review_comparison", "get", True),
    ("adjudicate", "post", True),
    ("exclusions", "get", False),
    ("browse", "get", False),
]


@pytest.mark.parametrize(("name", "method", "needs_comparison"), REVIEW_PAGES)
def test_annotators_get_403_and_outsiders_404_on_review_pages(
    client, split, annotator, outsider, name, method, needs_comparison
):
    project, comparison, _ = split
    args = [project.id, comparison.id] if needs_comparison else [project.id]
    url = reverse(f"labeling:{name}", args=args)
    client.force_login(annotator)
    assert getattr(client, method)(url).status_code == 403
    client.force_login(outsider)
    assert getattr(client, method)(url).status_code == 404
    assert not Adjudication.objects.exists() and not ItemFlag.objects.exists()


def test_a_reviewer_cannot_reach_another_projects_comparison(client, split, reviewer, make_project):
    project, _, _ = split
    elsewhere = make_project("Elsewhere", pairs=1)
    foreign = Comparison.objects.get(project=elsewhere)
    client.force_login(reviewer)
    assert (
        client.get(reverse("labeling:review_comparison", args=[project.id, foreign.id])).status_code
        == 404
    )


def test_the_queue_reads_votes_in_a_fixed_number_of_queries(client, split, reviewer, annotator):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project, first, second = split
    set_aside_comparison(second, project, first.id, FlagKind.FLAG, FlagReason.OTHER)
    client.force_login(reviewer)
    url = reverse("labeling:review", args=[project.id])
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    other = Comparison.objects.filter(project=project).order_by("id").last()
    cast_vote(annotator, project, other.id, VoteInput("A", "clear"))
    cast_vote(second, project, other.id, VoteInput("B", "clear"))
    set_aside_comparison(annotator, project, other.id, FlagKind.FLAG, FlagReason.OTHER)
    with CaptureQueriesContext(connection) as two:
        page = client.get(url)
    assert page.context["queue"].split_total == 2
    assert len(two.captured_queries) == len(one.captured_queries)
