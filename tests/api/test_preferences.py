"""The preferences stream: triples as JSON lines, opaque cursors, filters."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling.models import Comparison, Role, Vote
from labeling.services import VoteInput, add_member, cast_vote, lease_next_comparison
from tests.api.conftest import World, bearer
from tests.conftest import make_user


def lines(response: Any) -> list[dict[str, Any]]:
    assert response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def prefs_url(world: World, **query: Any) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/api/v1/projects/{world.home.project.id}/preferences?{params}"


@pytest.fixture
def voted(world: World) -> World:
    """Three annotators vote on round 1's two pairs: unanimous A on one, 2-1 on the other."""
    users = [make_user(f"voter{index}") for index in range(3)]
    project = world.home.project
    project.overlap = 3
    project.save()
    Comparison.objects.filter(project=project, round__number=1).update(votes_target=3)
    comparisons = list(Comparison.objects.filter(project=project, round__number=1).order_by("id"))
    plan = {0: ["A", "A", "A"], 1: ["A", "B", "B"]}
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    for user_index, user in enumerate(users):
        while (comparison := lease_next_comparison(user, project)) is not None:
            choice = plan[comparisons.index(comparison)][user_index]
            cast_vote(user, project, comparison.id, VoteInput(choice, "clear"))
    return world


@pytest.mark.django_db
def test_rows_are_triples_in_vote_order(voted: World, client) -> None:
    rows = lines(client.get(prefs_url(voted), **bearer(voted.token(["export"]))))
    assert len(rows) == 6 + 6  # six imported preferences, six annotator votes
    assert [row["vote_id"] for row in rows] == sorted(row["vote_id"] for row in rows)
    first = rows[0]
    assert {"prompt", "chosen", "rejected", "agreement", "annotator", "round"} <= first.keys()
    assert first["chosen"] == "A careful answer 0."


@pytest.mark.django_db
def test_cursor_pages_cover_every_row_once(voted: World, client) -> None:
    headers = bearer(voted.token(["export"]))
    everything = [row["vote_id"] for row in lines(client.get(prefs_url(voted), **headers))]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 5}
        if cursor:
            query["cursor"] = cursor
        response = client.get(prefs_url(voted, **query), **headers)
        seen += [row["vote_id"] for row in lines(response)]
        pages += 1
        cursor = response.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response
            break
        assert response["Link"].endswith('rel="next"') and cursor in response["Link"]
    assert seen == everything
    assert pages == 3


@pytest.mark.django_db
def test_a_made_up_cursor_gets_400(voted: World, client) -> None:
    response = client.get(prefs_url(voted, cursor="not-ours"), **bearer(voted.token()))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.django_db
def test_filters_round_annotator_agreement_and_time(voted: World, client) -> None:
    headers = bearer(voted.token(["export"]))

    def fetch(**query: Any) -> list[dict[str, Any]]:
        return lines(client.get(prefs_url(voted, **query), **headers))

    assert {row["round"] for row in fetch(round=1)} == {1}
    assert len(fetch(round=1)) == 6
    assert len(fetch(round=2)) == 6
    assert {row["annotator"] for row in fetch(annotator="voter1")} == {"voter1"}
    agreed = fetch(round=1, min_agreement=0.6)
    # unanimous comparison: 3 votes at 1.0; split one: the two B votes at 2/3; the lone A out
    assert sorted(row["agreement"] for row in agreed) == [0.666667, 0.666667, 1.0, 1.0, 1.0]
    assert len(fetch(round=1, min_agreement=1)) == 3
    later = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert fetch(created_after=later) == []
    assert len(fetch(created_before=later)) == 12


@pytest.mark.django_db
def test_bad_filter_values_get_422_with_field_details(voted: World, client) -> None:
    response = client.get(prefs_url(voted, min_agreement=2, limit=0), **bearer(voted.token()))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert {tuple(detail["loc"]) for detail in error["details"]} == {
        ("query", "min_agreement"),
        ("query", "limit"),
    }


@pytest.mark.django_db
def test_gold_ties_and_both_bad_are_left_out(voted: World, client) -> None:
    comparison = Comparison.objects.filter(project=voted.home.project, round__number=1).first()
    assert comparison is not None
    Comparison.objects.filter(id=comparison.id).update(is_gold=True)
    rows = lines(client.get(prefs_url(voted), **bearer(voted.token(["export"]))))
    assert comparison.id not in {row["comparison_id"] for row in rows}
    decisive = Vote.objects.filter(comparison__project=voted.home.project, chosen__isnull=False)
    assert len(rows) == decisive.exclude(comparison=comparison).count()
