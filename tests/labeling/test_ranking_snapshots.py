"""Snapshots of ranking tasks: listwise rows, Borda consensus, pairs converted from rankings,
their filters and refusals, determinism, the Parquet file, and the engine's loader reading them.

The rankings are made by hand through the real models (labeling.rankings.create_ranking_tasks
and Ranking rows), so every expected row below is worked out from the data, not from the code.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from labeling.models import (
    AnnotatorExclusion,
    Completion,
    JobStatus,
    Project,
    Prompt,
    PromptSplit,
    QualityReport,
    Ranking,
    RankingTask,
    Round,
    RoundPurpose,
    Snapshot,
    VoteSource,
)
from labeling.rankings import TaskSpec, create_ranking_tasks
from labeling.snapshots import build_snapshot, request_snapshot, snapshot_file
from tests.conftest import make_user
from training.engine.data import read_records
from training.engine.listwise import check_ranking_row
from training.engine.rankings import parse_ranking


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def make_task(round_: Round, prompt: str | list[dict[str, str]], texts: list[str]) -> RankingTask:
    chat = isinstance(prompt, list)
    row = Prompt.objects.create(
        project=round_.project, text="" if chat else prompt, messages=prompt if chat else None
    )
    completions = [
        Completion.objects.create(prompt=row, text=text, model_name=f"model-{i}")
        for i, text in enumerate(texts)
    ]
    (task,) = create_ranking_tasks(round_, [TaskSpec(row, completions, votes_target=3)])
    return task


def rank(task: RankingTask, ranking: Any, annotator: Any = None, **extra: Any) -> Ranking:
    if annotator is None:
        extra.setdefault("imported_from", "rankings.jsonl")
        extra.setdefault("source", VoteSource.IMPORTED)
    made = Ranking.objects.create(task=task, annotator=annotator, ranking=ranking, **extra)
    RankingTask.objects.filter(pk=task.pk).update(vote_count=task.rankings.count())
    return made


class World:
    """Task A (round 1, K=4) ranked by u1 ([2, [0, 3], 1]), u2 ([[3, 0], 2, 1], stored with its
    tie group out of order) and an import ([0, 1, 2, 3]); task B (round 2, K=3) ranked by u1
    ([1, 0, 2]); a task in an evaluation round and one on a held-out prompt, both ranked, never
    exported."""

    def __init__(self) -> None:
        self.project = Project.objects.create(name="Ranked", overlap=3)
        self.u1, self.u2 = make_user("ranker1"), make_user("ranker2")
        one = Round.objects.create(project=self.project, number=1)
        two = Round.objects.create(project=self.project, number=2)
        evaluation = Round.objects.create(
            project=self.project, number=3, purpose=RoundPurpose.EVALUATION
        )
        self.a_texts = ["Paris.", "Lyon.", "Paris, the capital.", "It is Paris."]
        self.a = make_task(one, "Capital of France?", self.a_texts)
        self.a_u1 = rank(self.a, [2, [0, 3], 1], self.u1)
        self.a_u2 = rank(self.a, [[3, 0], 2, 1], self.u2)
        self.a_imp = rank(self.a, [0, 1, 2, 3])
        self.b_texts = ["4", "2 + 2 = 4", "5"]
        self.b = make_task(two, "2 + 2?", self.b_texts)
        self.b_u1 = rank(self.b, [1, 0, 2], self.u1)
        hidden = make_task(evaluation, "Evaluation prompt", ["x", "y", "z"])
        rank(hidden, [0, 1, 2], self.u1)
        held_out = make_task(one, "Held-out prompt", ["p", "q", "r"])
        Prompt.objects.filter(pk=held_out.prompt_id).update(split=PromptSplit.EVAL)
        rank(held_out, [0, 1, 2], self.u1)


@pytest.fixture
def world(db: None) -> World:
    return World()


def build(project: Project, policy: str, **kwargs: Any) -> Any:
    snapshot = build_snapshot(request_snapshot(project, policy, **kwargs).pk)
    assert snapshot is not None and snapshot.status == JobStatus.SUCCEEDED, snapshot and (
        snapshot.error
    )
    return snapshot


def read_rows(snapshot: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in snapshot_file(snapshot).read_text().splitlines()]


@pytest.mark.django_db
def test_rankings_policy_writes_one_canonical_listwise_row_per_ranking(world):
    snapshot = build(world.project, "rankings")
    rows = read_rows(snapshot)
    models = ["model-0", "model-1", "model-2", "model-3"]
    common_a = {
        "prompt": "Capital of France?",
        "responses": world.a_texts,
        "task_id": world.a.pk,
        "round": 1,
        "vote_count": 3,
        "models": models,
    }
    assert rows == [
        {**common_a, "ranking": [2, [0, 3], 1], "ranking_id": world.a_u1.pk, "source": "human"},
        # the tie group stored as [3, 0] is written in canonical (ascending) order
        {**common_a, "ranking": [[0, 3], 2, 1], "ranking_id": world.a_u2.pk, "source": "human"},
        {**common_a, "ranking": [0, 1, 2, 3], "ranking_id": world.a_imp.pk, "source": "imported"},
        {
            "prompt": "2 + 2?",
            "responses": world.b_texts,
            "task_id": world.b.pk,
            "round": 2,
            "vote_count": 1,
            "models": models[:3],
            "ranking": [1, 0, 2],
            "ranking_id": world.b_u1.pk,
            "source": "human",
        },
    ]
    assert list(rows[0]) == [
        "prompt", "responses", "ranking", "ranking_id", "task_id", "round", "vote_count",
        "models", "source",
    ]  # fmt: skip
    assert snapshot.row_count == 4


@pytest.mark.django_db
def test_consensus_policy_aggregates_each_tasks_rankings_by_borda_count(world):
    rows = read_rows(build(world.project, "ranking_consensus"))
    # Task A's ranks (ties share the mean of their ranks): u1 [2,[0,3],1] gives 0: 2.5, 1: 4,
    # 2: 1, 3: 2.5; u2 [[0,3],2,1] gives 1.5, 4, 3, 1.5; the import 1, 2, 3, 4. Mean ranks:
    # 5/3, 10/3, 7/3, 8/3, so the consensus is 0 > 2 > 3 > 1.
    a, b = rows
    assert a["task_id"] == world.a.pk and a["ranking"] == [0, 2, 3, 1]
    assert a["mean_ranks"] == [1.666667, 3.333333, 2.333333, 2.666667]
    assert a["ranking_count"] == 3
    assert a["ranking_ids"] == [world.a_u1.pk, world.a_u2.pk, world.a_imp.pk]
    assert a["source"] == "mixed"  # human and imported rankings
    assert a["responses"] == world.a_texts and a["prompt"] == "Capital of France?"
    assert b == {
        "prompt": "2 + 2?",
        "responses": world.b_texts,
        "ranking": [1, 0, 2],
        "task_id": world.b.pk,
        "round": 2,
        "vote_count": 1,
        "models": ["model-0", "model-1", "model-2"],
        "source": "human",
        "ranking_count": 1,
        "ranking_ids": [world.b_u1.pk],
        "mean_ranks": [2.0, 1.0, 3.0],
    }


@pytest.mark.django_db
def test_consensus_keeps_ties_and_leaves_out_a_task_whose_consensus_orders_nothing(world):
    # Task B gets the opposite ranking: mean ranks 2, 2, 2, every response tied.
    rank(world.b, [2, 0, 1], world.u2)
    # with an import [[0, 2], 1]: 0: (2+2+1.5)/3, 1: (1+3+3)/3, 2: (3+1+1.5)/3, so 0 ties 2
    rank(world.b, [[0, 2], 1])
    rows = read_rows(build(world.project, "ranking_consensus"))
    assert [row["task_id"] for row in rows] == [world.a.pk, world.b.pk]
    assert rows[1]["ranking"] == [[0, 2], 1] and rows[1]["ranking_count"] == 3
    Ranking.objects.filter(task=world.b, annotator=None).delete()
    rows = read_rows(build(world.project, "ranking_consensus"))
    assert [row["task_id"] for row in rows] == [world.a.pk]


def pair_keys(rows: list[dict[str, Any]], ranking_id: int) -> list[tuple[str, str, int, int]]:
    return [
        (row["chosen"], row["rejected"], row["chosen_position"], row["rejected_position"])
        for row in rows
        if row["ranking_id"] == ranking_id
    ]


@pytest.mark.django_db
def test_ranking_pairs_all_implied_pairs_name_their_ranking_and_positions(world):
    snapshot = build(world.project, "ranking_pairs", pair_conversion="all")
    rows = read_rows(snapshot)
    t = world.a_texts
    # u1 [2, [0, 3], 1]: 2 over the tied 0 and 3, then over 1; 0 and 3 over 1; 0-3 no pair
    assert pair_keys(rows, world.a_u1.pk) == [
        (t[2], t[0], 0, 1), (t[2], t[3], 0, 1), (t[2], t[1], 0, 2),
        (t[0], t[1], 1, 2), (t[3], t[1], 1, 2),
    ]  # fmt: skip
    assert len(pair_keys(rows, world.a_u2.pk)) == 5
    assert len(pair_keys(rows, world.a_imp.pk)) == 6  # a strict ranking of 4: 4 * 3 / 2
    assert len(pair_keys(rows, world.b_u1.pk)) == 3
    assert snapshot.row_count == len(rows) == 19
    first = rows[0]
    assert first == {
        "prompt": "Capital of France?",
        "chosen": t[2],
        "rejected": t[0],
        "round": 1,
        "vote_count": 3,
        "chosen_model": "model-2",
        "rejected_model": "model-0",
        "source": "human",
        "ranking_id": world.a_u1.pk,
        "task_id": world.a.pk,
        "chosen_position": 0,
        "rejected_position": 1,
    }
    imported = [row for row in rows if row["ranking_id"] == world.a_imp.pk]
    assert {row["source"] for row in imported} == {"imported"}


@pytest.mark.django_db
def test_best_worst_and_adjacent_conversions(world):
    t, b = world.a_texts, world.b_texts
    rows = read_rows(build(world.project, "ranking_pairs", pair_conversion="best_worst"))
    assert pair_keys(rows, world.a_u1.pk) == [(t[2], t[1], 0, 2)]
    assert pair_keys(rows, world.a_u2.pk) == [(t[0], t[1], 0, 2), (t[3], t[1], 0, 2)]
    assert pair_keys(rows, world.a_imp.pk) == [(t[0], t[3], 0, 3)]
    assert pair_keys(rows, world.b_u1.pk) == [(b[1], b[2], 0, 2)]
    assert len(rows) == 5
    rows = read_rows(build(world.project, "ranking_pairs", pair_conversion="adjacent"))
    assert pair_keys(rows, world.a_u1.pk) == [
        (t[2], t[0], 0, 1), (t[2], t[3], 0, 1), (t[0], t[1], 1, 2), (t[3], t[1], 1, 2),
    ]  # fmt: skip
    assert pair_keys(rows, world.a_u2.pk) == [
        (t[0], t[2], 0, 1),
        (t[3], t[2], 0, 1),
        (t[2], t[1], 1, 2),
    ]
    assert pair_keys(rows, world.b_u1.pk) == [(b[1], b[0], 0, 1), (b[0], b[2], 1, 2)]
    assert len(rows) == 4 + 3 + 3 + 2


@pytest.mark.django_db
def test_same_rankings_give_byte_identical_files_and_tie_order_does_not_matter(world):
    first = build(world.project, "rankings")
    second = build(world.project, "rankings")
    assert first.sha256 == second.sha256
    assert snapshot_file(first).read_bytes() == snapshot_file(second).read_bytes()
    assert first.sha256 == hashlib.sha256(snapshot_file(first).read_bytes()).hexdigest()
    assert first.parquet_sha256 == second.parquet_sha256
    Ranking.objects.filter(pk=world.a_u2.pk).update(ranking=[[0, 3], 2, 1])
    assert build(world.project, "rankings").sha256 == first.sha256
    Ranking.objects.filter(pk=world.a_u2.pk).update(ranking=[0, 3, 2, 1])
    assert build(world.project, "rankings").sha256 != first.sha256


@pytest.mark.django_db
def test_filters_rounds_sources_and_excluded_annotators(world):
    def ids(**kwargs: Any) -> list[int]:
        return [row["ranking_id"] for row in read_rows(build(world.project, "rankings", **kwargs))]

    assert ids(filters={"rounds": [2]}) == [world.b_u1.pk]
    assert ids(filters={"sources": ["imported"]}) == [world.a_imp.pk]
    AnnotatorExclusion.objects.create(
        project=world.project, annotator=world.u2, reason="random order", created_by=world.u1
    )
    assert ids() == [world.a_u1.pk, world.a_imp.pk, world.b_u1.pk]
    QualityReport.objects.create(
        project=world.project,
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now(),
        data={"flagged": [world.u1.pk]},
    )
    assert ids(filters={"exclude_flagged": True}) == [world.a_imp.pk]
    pairs = read_rows(
        build(world.project, "ranking_pairs", pair_conversion="all", filters={"rounds": [1]})
    )
    assert {row["task_id"] for row in pairs} == {world.a.pk}
    with pytest.raises(ValueError, match="evaluation round"):
        request_snapshot(world.project, "rankings", filters={"rounds": [3]})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "kwargs", "message"),
    [
        ("ranking_pairs", {}, "pair_conversion: the ranking_pairs policy needs one of all"),
        ("ranking_pairs", {"pair_conversion": "top"}, r"\(got 'top'\)"),
        ("rankings", {"pair_conversion": "all"}, "only the ranking_pairs policy converts"),
        ("majority", {"pair_conversion": "adjacent"}, "leave it empty for majority"),
        ("rankings", {"filters": {"adjudicated_only": True}}, "adjudicated_only does not apply"),
        ("ranking_consensus", {"filters": {"exclude_judges": [1]}}, "no AI judges"),
        (
            "ranking_pairs",
            {"pair_conversion": "all", "filters": {"humans_win": True}},
            "humans_win",
        ),
    ],
)
def test_requests_that_do_not_apply_are_refused(world, policy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        request_snapshot(world.project, policy, **kwargs)


@pytest.mark.django_db
def test_a_ranking_policy_on_a_project_without_ranking_tasks_is_refused(make_project):
    project = make_project("Pairs only", pairs=2)
    with pytest.raises(ValueError, match="has no ranking tasks"):
        request_snapshot(project, "rankings")


@pytest.mark.django_db
def test_rankings_outside_the_scope_give_an_empty_snapshot_as_pairs_do(world):
    snapshot = build(world.project, "rankings", filters={"sources": ["judge"]})
    assert snapshot.row_count == 0 and snapshot_file(snapshot).read_bytes() == b""
    assert pq.read_table(snapshot_file(snapshot, "parquet")).num_rows == 0


@pytest.mark.django_db
def test_a_malformed_stored_ranking_fails_the_build_naming_it(world):
    Ranking.objects.filter(pk=world.b_u1.pk).update(ranking=[1, 1, 2])
    requested = request_snapshot(world.project, "rankings")
    with pytest.raises(ValueError, match="appears twice"):
        build_snapshot(requested.pk)
    snapshot = Snapshot.objects.get(pk=requested.pk)
    assert snapshot.status == JobStatus.FAILED
    assert f"Ranking {world.b_u1.pk} of task {world.b.pk}" in snapshot.error
    assert "index 1 appears twice" in snapshot.error


@pytest.mark.django_db
def test_parquet_manifest_and_card_describe_the_ranking_columns(world):
    snapshot = build(world.project, "ranking_consensus")
    table = pq.read_table(snapshot_file(snapshot, "parquet"))
    assert table.column_names == [
        "prompt", "responses", "ranking", "task_id", "round", "vote_count", "models", "source",
        "ranking_count", "ranking_ids", "mean_ranks",
    ]  # fmt: skip
    assert table.column("ranking").to_pylist()[0] == [[0], [2], [3], [1]]
    manifest = json.loads(snapshot_file(snapshot, "manifest").read_text())
    assert manifest["columns"] == table.column_names
    assert manifest["format"] == "listwise" and manifest["aggregation"] == "borda"
    assert manifest["loss_type"] == "plackett_luce" and manifest["trainable"] is True
    assert manifest["rows"] == 2 and manifest["files"]["data.jsonl"]["sha256"] == snapshot.sha256
    from core.artifacts import stage

    card = (stage(snapshot.path) / "README.md").read_text()
    assert "Borda consensus" in card and "`ranking_count`" in card and snapshot.sha256 in card

    pairs = build(world.project, "ranking_pairs", pair_conversion="adjacent")
    table = pq.read_table(snapshot_file(pairs, "parquet"))
    assert table.column_names == [
        "prompt", "chosen", "rejected", "round", "vote_count", "chosen_model", "rejected_model",
        "source", "ranking_id", "task_id", "chosen_position", "rejected_position",
    ]  # fmt: skip
    assert table.num_rows == pairs.row_count == 12
    manifest = json.loads(snapshot_file(pairs, "manifest").read_text())
    assert manifest["pair_conversion"] == "adjacent" and manifest["format"] == "pairs"


@pytest.mark.django_db
def test_the_engines_loader_reads_listwise_snapshots_jsonl_and_parquet_alike(world):
    for policy in ("rankings", "ranking_consensus"):
        snapshot = build(world.project, policy)
        rows = read_rows(snapshot)
        for file_format in ("jsonl", "parquet"):
            records = read_records(snapshot_file(snapshot, file_format))
            checked = [check_ranking_row(record) for record in records]
            assert [groups for _, _, groups in checked] == [
                parse_ranking(row["ranking"], len(row["responses"])) for row in rows
            ]
            assert [responses for _, responses, _ in checked] == [row["responses"] for row in rows]


@pytest.mark.django_db
def test_a_chat_prompt_makes_every_row_conversational(world):
    chat_round = Round.objects.create(project=world.project, number=4)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    task = make_task(chat_round, chat, ["Hello.", "Hi!", "Hey."])
    rank(task, [1, [0, 2]], world.u1)
    rows = read_rows(build(world.project, "rankings"))
    assert rows[0]["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert rows[0]["responses"][0] == [{"role": "assistant", "content": "Paris."}]
    assert rows[-1]["prompt"] == chat
    snapshot = build(world.project, "rankings")
    for record in read_records(snapshot_file(snapshot, "parquet")):
        check_ranking_row(record)
    pairs = read_rows(build(world.project, "ranking_pairs", pair_conversion="all"))
    assert pairs[-1]["chosen"] == [{"role": "assistant", "content": "Hi!"}]
