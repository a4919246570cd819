"""Snapshots choose whose votes count: humans only, judges only, both with humans winning, a
judge left out."""

from __future__ import annotations

import json

import pytest

from judging.services import add_judge, run_judging
from labeling.models import Choice, Role
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file


def rows(project, **filters):
    snapshot = build_snapshot(request_snapshot(project, "every_vote", filters=filters).id)
    return [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]


@pytest.fixture
def mixed(make_project, annotator):
    """4 comparisons; the annotator voted B on the first two; two judges voted A on all."""
    project = make_project(pairs=4, members={annotator: Role.ANNOTATOR})
    for _ in range(2):
        comparison = lease_next_comparison(annotator, project)
        cast_vote(annotator, project, comparison.id, VoteInput(Choice.B, "clear"))
    for name in ("one", "two"):
        run_judging(
            add_judge(
                project,
                name,
                "programmatic",
                {"callable": "tests.judging.callables.shorter_is_better"},
            ),
            scope="round",
            round=project.rounds.get(),
        )
    return project


def test_humans_only_judges_only_and_both_and_rows_say_their_source(mixed):
    humans = rows(mixed, sources=["human"])
    assert len(humans) == 2 and {row["source"] for row in humans} == {"human"}
    judges = rows(mixed, sources=["judge"])
    assert len(judges) == 8 and {row["source"] for row in judges} == {"judge"}
    assert len(rows(mixed)) == 10
    snapshot = build_snapshot(request_snapshot(mixed, "majority", 0.5).id)
    majority = [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]
    # Two comparisons: human B against two judges' A (A wins 2 of 3, votes of two sources);
    # two more decided by the judges alone.
    assert sorted(row["source"] for row in majority) == ["judge", "judge", "mixed", "mixed"]


def test_humans_win_where_both_voted(mixed):
    kept = rows(mixed, humans_win=True)
    by_comparison: dict[int, list[dict]] = {}
    for row in kept:
        by_comparison.setdefault(row["comparison_id"], []).append(row)
    assert len(kept) == 2 + 2 * 2  # two human rows, judge rows only where no human voted
    human_voted = [c for c, group in by_comparison.items() if len(group) == 1]
    assert len(human_voted) == 2
    assert all("I think" in by_comparison[c][0]["chosen"] for c in human_voted)  # B won there


def test_a_judge_can_be_left_out(mixed):
    one = mixed.judges.get(name="one")
    assert len(rows(mixed, sources=["judge"], exclude_judges=[one.pk])) == 4
    with pytest.raises(ValueError, match="no judge 999"):
        request_snapshot(mixed, "every_vote", filters={"exclude_judges": [999]})
    with pytest.raises(ValueError, match="humans_win must be true or false"):
        request_snapshot(mixed, "every_vote", filters={"humans_win": "yes"})


def test_the_snapshot_form_chooses_sources_and_leaves_judges_out(mixed, client, project_admin):
    from django.urls import reverse

    from labeling.models import Membership, Snapshot
    from labeling.snapshots import manifest_filters

    Membership.objects.create(project=mixed, user=project_admin, role=Role.ADMIN)
    client.force_login(project_admin)
    url = reverse("training:snapshot_create", args=[mixed.pk])
    page = client.get(reverse("training:pipeline", args=[mixed.pk])).content.decode()
    assert 'name="votes_from"' in page and 'name="exclude_judges"' in page
    answer = client.post(
        url,
        {
            "policy": "every_vote",
            "min_agreement": 0.5,
            "votes_from": "judges",
            "exclude_judges": "one",
        },
    )
    assert answer.status_code == 303
    snapshot = Snapshot.objects.latest("id")
    one = mixed.judges.get(name="one")
    assert snapshot.filters["sources"] == ["judge"] and snapshot.filters["exclude_judges"] == [
        one.pk
    ]
    assert manifest_filters(snapshot)["judges_excluded"] == [one.pk]
    client.post(url, {"policy": "every_vote", "min_agreement": 0.5, "votes_from": "humans_win"})
    assert Snapshot.objects.latest("id").filters["humans_win"] is True
    bad = client.post(
        url, {"policy": "every_vote", "min_agreement": 0.5, "exclude_judges": "nobody"}
    )
    assert bad.status_code == 303 and Snapshot.objects.count() == 2  # refused with a message


def test_the_api_takes_the_judge_filters(mixed, client, project_admin):
    import json as _json

    from api.models import Scope
    from api.tokens import create_token
    from labeling.models import Membership, Snapshot

    Membership.objects.create(project=mixed, user=project_admin, role=Role.ADMIN)
    token = create_token(project_admin, "t", [Scope.EXPORT], [mixed]).secret
    answer = client.post(
        f"/api/v1/projects/{mixed.pk}/snapshots",
        _json.dumps(
            {"policy": "every_vote", "filters": {"exclude_judges": ["two"], "humans_win": True}}
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 202, answer.content
    filters = Snapshot.objects.get().filters
    assert filters["exclude_judges"] == [mixed.judges.get(name="two").pk] and filters["humans_win"]
