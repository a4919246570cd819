"""Which open comparison an annotator gets next, under each Project.queue_order."""

import pytest
from django.urls import reverse

from labeling.importers import ImportKind, import_file
from labeling.models import Comparison, QueueOrder, Role
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from tests.conftest import make_user, pairs_jsonl


@pytest.fixture
def two_rounds(make_project):
    def build(order: str):
        voter, other = make_user("voter"), make_user("other_voter")
        project = make_project(
            f"Queue {order}",
            pairs=3,
            overlap=2,
            members={voter: Role.ANNOTATOR, other: Role.ANNOTATOR},
        )
        project.queue_order = order
        project.gold_rate = 0.0
        project.save()
        # One vote on the first round's first comparison, so "most votes" and "fewest
        # votes" disagree with "newest round".
        first = Comparison.objects.filter(project=project).order_by("id").first()
        cast_vote(other, project, first.id, VoteInput("tie"))
        import_file(project, pairs_jsonl(2, "Round two"), "round2.jsonl", ImportKind.PAIRS)
        return project, voter, first

    return build


def test_newest_round_serves_a_new_rounds_comparison_first(two_rounds):
    project, voter, _ = two_rounds(QueueOrder.NEWEST_ROUND)
    served = lease_next_comparison(voter, project)
    newest = project.rounds.order_by("-number").first()
    assert served.round_id == newest.id
    assert served.id == Comparison.objects.filter(round=newest).order_by("id").first().id


def test_fewest_votes_serves_an_unvoted_comparison_before_a_half_voted_one(two_rounds):
    project, voter, half_voted = two_rounds(QueueOrder.FEWEST_VOTES)
    served = []
    while (comparison := lease_next_comparison(voter, project)) is not None:
        served.append(comparison.id)
        cast_vote(voter, project, comparison.id, VoteInput("tie"))
    assert len(served) == 5
    assert served[-1] == half_voted.id  # the only one with a vote already comes last
    assert served[:4] == sorted(served[:4])  # ties broken by id


def test_random_order_serves_every_comparison_once_in_some_order(two_rounds):
    project, voter, _ = two_rounds(QueueOrder.RANDOM)
    served = []
    while (comparison := lease_next_comparison(voter, project)) is not None:
        served.append(comparison.id)
        cast_vote(voter, project, comparison.id, VoteInput("tie"))
    assert sorted(served) == sorted(
        Comparison.objects.filter(project=project).values_list("id", flat=True)
    )


def test_annotate_page_names_the_round(client, two_rounds):
    project, voter, _ = two_rounds(QueueOrder.NEWEST_ROUND)
    client.force_login(voter)
    page = client.get(f"/projects/{project.id}/annotate/")
    assert b'data-testid="round">Round 2<' in page.content


def test_admin_sets_queue_order_and_gold_rate_on_the_project_page(
    client, project, project_admin, annotator
):
    url = reverse("labeling:queue_settings", args=[project.id])
    client.force_login(annotator)
    assert client.post(url, {"queue_order": "random", "gold_rate": "0.2"}).status_code == 403
    client.force_login(project_admin)
    bad = client.post(url, {"queue_order": "random", "gold_rate": "0.9"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and b"less than or equal to 0.5" in bad.content
    assert b"<html" not in bad.content
    assert client.post(url, {"queue_order": "fewest_votes", "gold_rate": "0.2"}).status_code == 303
    project.refresh_from_db()
    assert (project.queue_order, project.gold_rate) == (QueueOrder.FEWEST_VOTES, 0.2)


def test_work_left_counts_only_what_can_be_served(project, annotator):
    from labeling.services import get_annotator_progress, set_aside_comparison

    assert get_annotator_progress(annotator, project).remaining == 5
    first, second = Comparison.objects.filter(project=project).order_by("id")[:2]
    set_aside_comparison(annotator, project, first.id, "skip", "other")
    assert get_annotator_progress(annotator, project).remaining == 4
    Comparison.objects.filter(id=second.id).update(judge_decided=True)
    assert get_annotator_progress(annotator, project).remaining == 4  # judged go to humans
    project.judged_to_humans = False
    project.save()
    assert get_annotator_progress(annotator, project).remaining == 3
    served = set()
    while (comparison := lease_next_comparison(annotator, project)) is not None:
        served.add(comparison.id)
        cast_vote(annotator, project, comparison.id, VoteInput("tie"))
    assert len(served) == 3 and not served & {first.id, second.id}
