"""What reviewers decide on the review pages reaches the next snapshot: an adjudication wins
over the split votes, an excluded annotator's votes are left out, and lifting brings them back."""

import pytest
from django.urls import reverse

from labeling.models import Comparison, Role, Vote
from labeling.services import VoteInput, cast_vote
from labeling.snapshots import build_snapshot, request_snapshot
from tests.conftest import make_user
from tests.labeling.test_snapshots import read_jsonl


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def snapshot_rows(project, policy):
    return read_jsonl(build_snapshot(request_snapshot(project, policy).id))


def test_adjudication_and_exclusion_from_the_review_pages_shape_the_export(
    client, make_project, reviewer
):
    left, right = make_user("votes_a"), make_user("votes_b")
    project = make_project(
        "Export review",
        pairs=2,
        overlap=2,
        members={reviewer: Role.REVIEWER, left: Role.ANNOTATOR, right: Role.ANNOTATOR},
    )
    split, agreed = Comparison.objects.filter(project=project).order_by("id")
    cast_vote(left, project, split.id, VoteInput("A", "clear"))
    cast_vote(right, project, split.id, VoteInput("B", "clear"))
    cast_vote(left, project, agreed.id, VoteInput("A", "clear"))
    cast_vote(right, project, agreed.id, VoteInput("A", "clear"))
    assert {row["comparison_id"] for row in snapshot_rows(project, "majority")} == {agreed.id}

    client.force_login(reviewer)
    client.post(reverse("labeling:adjudicate", args=[project.id, split.id]), {"choice": "B"})
    rows = {row["comparison_id"]: row for row in snapshot_rows(project, "majority")}
    assert rows[split.id]["chosen"] == split.completion_b.text and rows[split.id]["adjudicated"]

    def exported_voters():
        ids = [row["vote_id"] for row in snapshot_rows(project, "every_vote") if row["vote_id"]]
        return set(Vote.objects.filter(id__in=ids).values_list("annotator__username", flat=True))

    assert exported_voters() == {"votes_a", "votes_b"}
    exclusions = reverse("labeling:exclusions", args=[project.id])
    client.post(exclusions, {"annotator": left.pk, "reason": "Always A"})
    assert exported_voters() == {"votes_b"}
    exclusion = left.exclusions.get()
    lift = reverse("labeling:lift_exclusion", args=[project.id, exclusion.id])
    client.post(lift, {"lift_reason": "Checked: fine"})
    assert exported_voters() == {"votes_a", "votes_b"}
