"""Ranking tasks and rankings through the API: rows, paging, filters, the JSON lines stream,
scopes and roles, and the quality figures of rankings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling.models import Membership, Ranking, Role, VoteSource
from labeling.quality.jobs import compute_quality_report, request_quality_report
from labeling.services import add_member
from labeling.snapshots import pseudonym
from tests.api.conftest import World, bearer
from tests.conftest import make_user
from tests.labeling.quality.ranking_data import add_ranking, make_ranking_tasks


def url(world: World, path: str, **query: Any) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/api/v1/projects/{world.home.project.id}/{path}?{params}"


def lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


@pytest.fixture
def ranked(world: World) -> dict[str, Any]:
    """Round 1: three tasks of K = 4, two annotators ranked the first two, the second with a
    tie; round 2: one task of K = 3 with an imported ranking."""
    project = world.home.project
    ana, ben = make_user("ana"), make_user("ben")
    for user in (ana, ben):
        add_member(project, user, Role.ANNOTATOR)
    tasks = make_ranking_tasks(project, 3, 4, round_number=1, votes_target=2)
    later = make_ranking_tasks(project, 1, 3, round_number=2)[0]
    rankings = [
        add_ranking(tasks[0], ana, [2, 0, 1, 3], [1, 3, 0, 2]),
        add_ranking(tasks[0], ben, [[3, 0], 1, 2]),
        add_ranking(tasks[1], ana, [0, 1, 2, 3]),
        add_ranking(
            later, None, [1, 0, 2], source=VoteSource.IMPORTED, imported_from="rankings.jsonl"
        ),
    ]
    return {"tasks": tasks, "later": later, "users": (ana, ben), "rankings": rankings}


@pytest.mark.django_db
def test_ranking_tasks_list_their_responses_in_canonical_order(ranked, world: World, client):
    body = client.get(url(world, "ranking-tasks"), **bearer(world.token(["read"]))).json()
    assert [item["id"] for item in body["items"]] == [t.pk for t in ranked["tasks"]] + [
        ranked["later"].pk
    ]
    first = body["items"][0]
    assert first["size"] == 4 and first["round"] == 1
    assert first["prompt"] == "Round 1 question 0?"
    assert first["responses"] == [f"Answer {i} to question 0." for i in range(4)]
    assert first["models"] == ["model-0", "model-1", "model-2", "model-3"]
    assert (first["vote_count"], first["votes_target"]) == (2, 2)
    assert body["next_cursor"] is None


@pytest.mark.django_db
def test_ranking_tasks_page_and_filter_by_round_and_completeness(ranked, world: World, client):
    headers = bearer(world.token(["read"]))
    seen, cursor = [], None
    while True:
        query: dict[str, Any] = {"limit": 3}
        if cursor:
            query["cursor"] = cursor
        body = client.get(url(world, "ranking-tasks", **query), **headers).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen == sorted(seen)
    round_2 = client.get(url(world, "ranking-tasks", round=2), **headers).json()["items"]
    assert [item["id"] for item in round_2] == [ranked["later"].pk]
    done = client.get(url(world, "ranking-tasks", complete="true"), **headers).json()["items"]
    assert [item["id"] for item in done] == [ranked["tasks"][0].pk]
    still_open = client.get(url(world, "ranking-tasks", complete="false"), **headers).json()
    assert len(still_open["items"]) == 3


@pytest.mark.django_db
def test_rankings_carry_canonical_ranking_display_order_and_a_pseudonym(
    ranked, world: World, client
):
    body = client.get(url(world, "rankings"), **bearer(world.token(["export"]))).json()
    rows = body["items"]
    assert [row["ranking_id"] for row in rows] == [r.pk for r in ranked["rankings"]]
    ana, ben = ranked["users"]
    first, second, _, imported = rows
    assert first["ranking"] == [2, 0, 1, 3] and first["display_order"] == [1, 3, 0, 2]
    assert first["responses"][2] == "Answer 2 to question 0."
    assert first["annotator"] == pseudonym(world.home.project.pk, ana.pk)
    # A tie group comes out in canonical form: its members ascending.
    assert second["ranking"] == [[0, 3], 1, 2]
    assert second["annotator"] == pseudonym(world.home.project.pk, ben.pk)
    assert imported["annotator"] is None and imported["display_order"] == []
    assert imported["source"] == "imported" and imported["imported_from"] == "rankings.jsonl"
    assert imported["round"] == 2 and len(imported["responses"]) == 3
    # Usernames never leave the server.
    assert "ana" not in json.dumps([row["annotator"] for row in rows])


@pytest.mark.django_db
def test_ranking_pages_cover_every_row_once(ranked, world: World, client):
    headers = bearer(world.token(["export"]))
    seen, cursor, pages = [], None, 0
    while True:
        query: dict[str, Any] = {"limit": 3}
        if cursor:
            query["cursor"] = cursor
        body = client.get(url(world, "rankings", **query), **headers).json()
        seen += [row["ranking_id"] for row in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.pk for r in ranked["rankings"]] and pages == 2
    bad = client.get(url(world, "rankings", cursor="not-a-cursor"), **headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.django_db
def test_ranking_filters(ranked, world: World, client):
    headers = bearer(world.token(["export"]))
    ana, _ = ranked["users"]
    ids = [r.pk for r in ranked["rankings"]]

    def found(**query: Any) -> list[int]:
        response = client.get(url(world, "rankings", **query), **headers)
        assert response.status_code == 200, response.content
        return [row["ranking_id"] for row in response.json()["items"]]

    assert found(round=2) == [ids[3]]
    assert found(source="human") == ids[:3]
    assert found(source="imported") == [ids[3]]
    assert found(annotator=pseudonym(world.home.project.pk, ana.pk)) == [ids[0], ids[2]]
    assert found(annotator="a-0000000000000000") == []
    assert found(task=ranked["tasks"][0].pk) == ids[:2]
    old = timezone.now() - timedelta(days=3)
    Ranking.objects.filter(pk=ids[0]).update(created_at=old)
    since = (old + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found(created_after=since) == ids[1:]
    assert found(created_before=since) == [ids[0]]
    wrong = client.get(url(world, "rankings", source="robot"), **headers)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_input"


@pytest.mark.django_db
def test_the_stream_gives_the_same_rows_as_json_lines_with_cursor_headers(
    ranked, world: World, client
):
    headers = bearer(world.token(["export"]))
    paged = client.get(url(world, "rankings"), **headers).json()["items"]
    first = client.get(url(world, "rankings/stream", limit=3), **headers)
    rows = lines(first)
    cursor = first["X-Next-Cursor"]
    assert first["Link"].endswith('rel="next"') and cursor in first["Link"]
    rest = client.get(url(world, "rankings/stream", limit=3, cursor=cursor), **headers)
    rows += lines(rest)
    assert "X-Next-Cursor" not in rest and "Link" not in rest

    # The stream writes full ISO times (as the preferences stream does), the JSON page
    # milliseconds and Z: the same instant.
    for streamed, page_row in zip(rows, paged, strict=True):
        at = datetime.fromisoformat(streamed.pop("created_at"))
        assert abs(at - datetime.fromisoformat(page_row.pop("created_at"))) < timedelta(
            milliseconds=1
        )
        assert streamed == page_row
    filtered = lines(client.get(url(world, "rankings/stream", source="imported"), **headers))
    assert [row["ranking_id"] for row in filtered] == [ranked["rankings"][3].pk]


@pytest.mark.django_db
def test_a_chat_prompt_makes_every_row_conversational(ranked, world: World, client):
    make_ranking_tasks(world.home.project, 1, 3, round_number=3, chat=True)
    body = client.get(url(world, "rankings"), **bearer(world.token(["export"]))).json()
    row = body["items"][0]
    assert row["prompt"] == [{"role": "user", "content": "Round 1 question 0?"}]
    assert row["responses"][0] == [{"role": "assistant", "content": "Answer 0 to question 0."}]
    tasks = client.get(url(world, "ranking-tasks", round=3), **bearer(world.token(["read"])))
    chat = tasks.json()["items"][0]
    assert chat["prompt"] == [{"role": "user", "content": "Round 3 question 0?"}]


@pytest.mark.django_db
def test_scopes_and_roles_as_for_pairs(ranked, world: World, client):
    read_only = client.get(url(world, "rankings"), **bearer(world.token(["read"])))
    assert read_only.status_code == 403
    assert read_only.json()["error"]["code"] == "missing_scope"
    export_only = client.get(url(world, "ranking-tasks"), **bearer(world.token(["export"])))
    assert export_only.status_code == 403
    ana, _ = ranked["users"]  # an annotator of the project
    secret = world.token(user=ana)
    for path in ("rankings", "rankings/stream", "ranking-tasks"):
        response = client.get(url(world, path), **bearer(secret))
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "insufficient_role"
    outside = f"/api/v1/projects/{world.other.project.id}/rankings"
    response = client.get(outside, **bearer(world.token()))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    stranger = make_user("stranger")
    Membership.objects.create(user=stranger, project=world.other.project, role=Role.ADMIN)
    response = client.get(
        url(world, "rankings"), **bearer(world.token(user=stranger, projects=[world.other.project]))
    )
    assert response.status_code == 404


@pytest.mark.django_db
def test_the_quality_figures_carry_the_rankings(ranked, world: World, client):
    project = world.home.project
    compute_quality_report(request_quality_report(project).pk)
    body = client.get(
        f"/api/v1/projects/{project.id}/quality", **bearer(world.token(["read"]))
    ).json()
    assert body["ranking_count"] == body["current_ranking_count"] == 3
    assert not body["stale"]
    figures = body["figures"]["rankings"]
    assert figures["project"]["agreement_tasks"] == 1
    assert figures["project"]["rankings"] == 3
