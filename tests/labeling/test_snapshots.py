"""Snapshot export: policies, determinism, layout for datasets/TRL, immutability."""

import hashlib
import json

import pyarrow.parquet as pq
import pytest
from django.db import DatabaseError, transaction

from labeling.importers import ImportKind, import_file
from labeling.models import Comparison, JobStatus, Role, Snapshot, SnapshotFrozen
from labeling.services import VoteInput, cast_vote, lease_next_comparison
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
from tests.conftest import make_user


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def vote_all(project, users, choose):
    """Each user votes on every comparison they can get; choose(comparison, user) -> choice."""
    for user in users:
        while (comparison := lease_next_comparison(user, project)) is not None:
            choice = choose(comparison, user)
            cast_vote(user, project, comparison.id, VoteInput(choice, "clear"))


def read_jsonl(snapshot):
    return [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]


@pytest.fixture
def voted_project(make_project):
    users = [make_user(f"v{i}") for i in range(3)]
    project = make_project("Snap", pairs=4, overlap=3, members={u: Role.ANNOTATOR for u in users})
    comparisons = list(Comparison.objects.filter(project=project).order_by("id"))
    plan = {
        # comparison index -> choices of v0, v1, v2
        0: ["A", "A", "A"],
        1: ["A", "B", "B"],
        2: ["tie", "tie", "A"],
        3: ["A", "B", "both_bad"],
    }

    def choose(comparison, user):
        return plan[comparisons.index(comparison)][users.index(user)]

    vote_all(project, users, choose)
    return project, comparisons


@pytest.mark.django_db
def test_every_vote_policy_exports_each_decisive_vote(voted_project):
    project, comparisons = voted_project
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    rows = read_jsonl(snapshot)
    assert snapshot.status == JobStatus.SUCCEEDED
    assert snapshot.row_count == len(rows) == 3 + 3 + 1 + 2
    first = [row for row in rows if row["comparison_id"] == comparisons[0].id]
    assert {row["chosen"] for row in first} == {comparisons[0].completion_a.text}
    assert all(row["agreement"] == 1.0 for row in first)
    split = [row for row in rows if row["comparison_id"] == comparisons[1].id]
    assert sorted(row["agreement"] for row in split) == [
        pytest.approx(1 / 3, abs=1e-6),
        pytest.approx(2 / 3, abs=1e-6),
        pytest.approx(2 / 3, abs=1e-6),
    ]


@pytest.mark.django_db
def test_majority_policy_keeps_clear_winners_only(voted_project):
    project, comparisons = voted_project
    snapshot = build_snapshot(request_snapshot(project, "majority", 0.5).id)
    rows = {row["comparison_id"]: row for row in read_jsonl(snapshot)}
    # 0: unanimous A; 1: B wins 2 of 3; 2: mostly ties -> dropped; 3: 1-1 split -> dropped.
    assert set(rows) == {comparisons[0].id, comparisons[1].id}
    assert rows[comparisons[1].id]["chosen"] == comparisons[1].completion_b.text
    assert rows[comparisons[1].id]["rejected"] == comparisons[1].completion_a.text
    assert rows[comparisons[1].id]["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    strict = build_snapshot(request_snapshot(project, "majority", 0.7).id)
    assert [row["comparison_id"] for row in read_jsonl(strict)] == [comparisons[0].id]


@pytest.mark.django_db
def test_same_votes_and_policy_give_identical_bytes(voted_project):
    project, _ = voted_project
    first = build_snapshot(request_snapshot(project, "every_vote").id)
    second = build_snapshot(request_snapshot(project, "every_vote").id)
    assert first.sha256 == second.sha256
    assert first.parquet_sha256 == second.parquet_sha256
    data = snapshot_file(first).read_bytes()
    assert hashlib.sha256(data).hexdigest() == first.sha256
    assert snapshot_file(second).read_bytes() == data


@pytest.mark.django_db
def test_a_new_vote_changes_the_hash(voted_project, make_project):
    project, _ = voted_project
    before = build_snapshot(request_snapshot(project, "every_vote").id)
    late = make_user("late")
    import_file(
        project,
        b'{"prompt": "Q", "response_a": "x", "response_b": "y"}',
        "p.jsonl",
        ImportKind.PAIRS,
    )
    vote_all(project, [late], lambda comparison, user: "B")
    after = build_snapshot(request_snapshot(project, "every_vote").id)
    assert after.sha256 != before.sha256
    assert after.row_count > before.row_count


@pytest.mark.django_db
def test_chat_prompts_make_every_row_conversational(make_project):
    user = make_user("chatter")
    project = make_project("Chat", pairs=1, members={user: Role.ANNOTATOR})
    chat = {
        "messages": [{"role": "user", "content": "Hi?"}],
        "response_a": "Hello!",
        "response_b": "Go away.",
    }
    import_file(project, json.dumps(chat).encode(), "chat.jsonl", ImportKind.PAIRS)
    vote_all(project, [user], lambda comparison, u: "A")
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    rows = read_jsonl(snapshot)
    assert all(isinstance(row["prompt"], list) for row in rows)
    assert {row["chosen"][0]["role"] for row in rows} == {"assistant"}
    assert [{"role": "user", "content": "Hi?"}] in [row["prompt"] for row in rows]
    table = pq.read_table(snapshot_file(snapshot, "parquet"))
    assert table.num_rows == len(rows)
    assert table.column("chosen").to_pylist() == [row["chosen"] for row in rows]


@pytest.mark.django_db
def test_gold_items_and_imported_preferences(make_project):
    project = make_project("Gold", pairs=0)
    data = (
        b'{"prompt": "Q", "chosen": "good", "rejected": "bad"}\n'
        b'{"prompt": "G", "chosen": "g1", "rejected": "g2"}'
    )
    import_file(project, data, "prefs.jsonl", ImportKind.PREFERENCES)
    Comparison.objects.filter(prompt__text="G").update(is_gold=True)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    rows = read_jsonl(snapshot)
    assert [(row["prompt"], row["chosen"], row["rejected"]) for row in rows] == [
        ("Q", "good", "bad")
    ]
    assert rows[0]["strength"] is None


@pytest.mark.django_db
def test_a_published_snapshot_refuses_to_be_modified(voted_project):
    project, _ = voted_project
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    snapshot.row_count = 1
    with pytest.raises(SnapshotFrozen):
        snapshot.save()
    with pytest.raises(SnapshotFrozen):
        snapshot.delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        Snapshot.objects.filter(id=snapshot.id).update(sha256="0" * 64)
    # Files are read-only on disk (root ignores the bits, so check them, not a write).
    assert snapshot_file(snapshot).stat().st_mode & 0o222 == 0
    snapshot.refresh_from_db()
    assert snapshot.row_count == 9


@pytest.mark.django_db
def test_a_claimed_snapshot_is_not_built_twice(voted_project):
    project, _ = voted_project
    snapshot = request_snapshot(project, "every_vote")
    assert build_snapshot(snapshot.id) is not None
    assert build_snapshot(snapshot.id) is None


@pytest.mark.django_db
def test_bad_policy_is_refused(voted_project):
    project, _ = voted_project
    with pytest.raises(ValueError, match="Unknown policy"):
        request_snapshot(project, "best_of")
    with pytest.raises(ValueError, match="min_agreement"):
        request_snapshot(project, "majority", 1.5)
    assert not Snapshot.objects.filter(project=project).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["every_vote", "majority"])
@pytest.mark.parametrize("chat", [False, True])
def test_fast_line_writer_matches_the_row_by_row_definition(voted_project, policy, chat):
    """iter_snapshot_lines encodes each comparison once; it must equal the plain definition."""
    from labeling.snapshots import (
        _canonical_line,
        _every_vote_rows,
        _majority_rows,
        iter_snapshot_lines,
    )

    project, _ = voted_project
    awkward = {
        "prompt": 'Zeilen\u2028und "Zitate" \U0001f642',
        "response_a": "a\tb",
        "response_b": "<b>x</b>",
    }
    import_file(project, json.dumps(awkward).encode(), "awkward.jsonl", ImportKind.PAIRS)
    vote_all(project, [make_user("late_voter")], lambda comparison, user: "B")
    snapshot = request_snapshot(project, policy, 0.5)
    rows = (
        _every_vote_rows(project.id, chat)
        if policy == "every_vote"
        else _majority_rows(project.id, chat, 0.5)
    )
    expected = [_canonical_line(row) for row in rows]
    assert expected
    assert list(iter_snapshot_lines(snapshot, chat)) == expected
