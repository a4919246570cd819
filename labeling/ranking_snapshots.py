"""Snapshots of ranking tasks: listwise rows, a Borda consensus per task, or converted pairs.

labeling.snapshots builds every snapshot (files, hashes, manifest, publishing); for the three
ranking policies it asks this module for the rows, the columns, the Parquet schema and the
dataset card. docs/rankings.md, "Snapshots, aggregation and training", describes the output.

- ``rankings``: one row per stored ranking: ``prompt``, ``responses`` (the task's K texts in
  canonical order), ``ranking`` (best first over those indices, a nested list a tie group),
  what the engine's listwise loader (training.engine.listwise, ``loss_type: plackett_luce``)
  reads as it is, plus provenance.
- ``ranking_consensus``: one row per task: the Borda consensus of the task's rankings in scope
  (training.engine.rankings.borda_consensus), the number of rankings aggregated and each
  response's mean rank; same listwise columns.
- ``ranking_pairs``: the pairs every ranking implies under the snapshot's ``pair_conversion``
  (training.engine.rankings.implied_pairs), as pair rows any pair loss trains on, each saying
  which ranking it came from and at which positions its two responses stood.

Which rankings: never evaluation rounds or held-out (eval split) prompts, never annotators a
reviewer excluded; the filters rounds, sources and exclude_flagged apply as they do to votes.
Rankings have no adjudication and no AI judges, so adjudicated_only, exclude_judges and
humans_win are refused for these policies. Rows come in task, then ranking id order; every
ranking is re-validated and written in canonical form (tie groups sorted), so the same
rankings always give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from labeling.models import (
    RANKING_POLICIES,
    PairConversion,
    Project,
    PromptSplit,
    Ranking,
    RankingItem,
    RankingTask,
    RoundPurpose,
    Snapshot,
    SnapshotPolicy,
)
from training.engine.rankings import (
    Groups,
    PairPolicy,
    RankingError,
    borda_consensus,
    canonical_groups,
    format_ranking,
    implied_pairs,
)

if TYPE_CHECKING:
    from labeling.snapshots import Scope

# Listwise policies: a run trains them with loss_type plackett_luce (training.params).
LISTWISE_POLICIES = (SnapshotPolicy.RANKINGS, SnapshotPolicy.RANKING_CONSENSUS)
RANKING_COLUMNS = [
    "prompt",
    "responses",
    "ranking",
    "ranking_id",
    "task_id",
    "round",
    # rankings the task holds (all of them, as a pair row's vote_count), and each response's
    # model name in canonical order
    "vote_count",
    "models",
    "source",
]
CONSENSUS_COLUMNS = [
    "prompt",
    "responses",
    "ranking",
    "task_id",
    "round",
    "vote_count",
    "models",
    # human, imported, judge, or mixed when the aggregated rankings came from several sources
    "source",
    "ranking_count",
    "ranking_ids",
    "mean_ranks",
]
RANKING_PAIR_COLUMNS = [
    "prompt",
    "chosen",
    "rejected",
    "round",
    "vote_count",
    "chosen_model",
    "rejected_model",
    "source",
    "ranking_id",
    "task_id",
    "chosen_position",
    "rejected_position",
]
# Filters that say nothing about rankings; refused rather than silently ignored.
NOT_FOR_RANKINGS = {
    "adjudicated_only": "rankings have no adjudication",
    "exclude_judges": "rankings have no AI judges",
    "humans_win": "rankings have no AI judges' votes to drop",
}
_TASK_CHUNK = 500  # tasks whose items and rankings are read in one query each


def is_ranking_policy(policy: str) -> bool:
    return policy in RANKING_POLICIES


def is_listwise(policy: str) -> bool:
    """A snapshot of this policy holds rankings (prompt, responses, ranking), not pairs."""
    return policy in LISTWISE_POLICIES


def check_request(
    project: Project, policy: str, pair_conversion: str, filters: dict[str, Any]
) -> None:
    """Refuse a ranking snapshot request that cannot be built as asked (ValueError names it):
    a pair conversion missing, unknown or given to a policy that converts nothing, a filter
    that does not apply to rankings, a project without ranking tasks."""
    if policy == SnapshotPolicy.RANKING_PAIRS:
        if pair_conversion not in PairConversion.values:
            given = f" (got {pair_conversion!r})" if pair_conversion else ""
            raise ValueError(
                "pair_conversion: the ranking_pairs policy needs one of "
                f"{', '.join(PairConversion.values)}{given}."
            )
    elif pair_conversion:
        raise ValueError(
            f"pair_conversion: only the ranking_pairs policy converts rankings to pairs; "
            f"leave it empty for {policy}."
        )
    if not is_ranking_policy(policy):
        return
    if isinstance(filters, dict):
        for key, why in NOT_FOR_RANKINGS.items():
            if filters.get(key):
                raise ValueError(f"{key} does not apply to the {policy} policy: {why}.")
    if not RankingTask.objects.filter(project=project).exists():
        raise ValueError(
            f"Project {project.name!r} has no ranking tasks, so the {policy} policy has "
            "nothing to export; pair policies export its comparisons."
        )


def columns_for(policy: str) -> list[str]:
    if policy == SnapshotPolicy.RANKING_PAIRS:
        return RANKING_PAIR_COLUMNS
    if policy == SnapshotPolicy.RANKING_CONSENSUS:
        return CONSENSUS_COLUMNS
    return RANKING_COLUMNS


# ----------------------------------------------------------------------------------------------
# reading


def rankings_in(scope: Scope) -> QuerySet[Ranking]:
    """The rankings a snapshot of this scope reads (its votes' rules, where they apply)."""
    rankings = (
        Ranking.objects.filter(task__project_id=scope.project_id)
        .exclude(task__round__purpose=RoundPurpose.EVALUATION)
        .exclude(task__prompt__split=PromptSplit.EVAL)
    )
    if scope.rounds:
        rankings = rankings.filter(task__round__number__in=scope.rounds)
    if scope.sources:
        rankings = rankings.filter(source__in=scope.sources)
    if scope.excluded:
        # An imported ranking has no annotator and is kept.
        rankings = rankings.exclude(annotator_id__in=scope.excluded)
    return rankings


def has_chat(scope: Scope) -> bool:
    """Whether any ranked prompt is a chat: then every row is conversational, as for pairs."""
    return rankings_in(scope).filter(task__prompt__messages__isnull=False).exists()


_RANKING_FIELDS = (
    "id",
    "task_id",
    "ranking",
    "source",
    "task__size",
    "task__round__number",
    "task__vote_count",
    "task__prompt__text",
    "task__prompt__messages",
)


def _task_groups(scope: Scope) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per task with a ranking in scope, in task order: (its rankings in id order, its items
    in canonical order). Two queries per _TASK_CHUNK tasks."""
    scoped = rankings_in(scope)
    task_ids = list(scoped.order_by("task_id").values_list("task_id", flat=True).distinct())
    for start in range(0, len(task_ids), _TASK_CHUNK):
        chunk = task_ids[start : start + _TASK_CHUNK]
        items: dict[int, list[dict[str, Any]]] = {}
        for item in (
            RankingItem.objects.filter(task_id__in=chunk)
            .order_by("task_id", "position")
            .values("task_id", "position", "completion__text", "completion__model_name")
        ):
            items.setdefault(item["task_id"], []).append(dict(item))
        by_task: dict[int, list[dict[str, Any]]] = {}
        for ranking in (
            scoped.filter(task_id__in=chunk).order_by("task_id", "id").values(*_RANKING_FIELDS)
        ):
            by_task.setdefault(ranking["task_id"], []).append(ranking)
        for task_id in chunk:
            yield by_task[task_id], items.get(task_id, [])


def _groups_of(ranking: dict[str, Any], items: list[dict[str, Any]]) -> Groups:
    """The stored ranking, validated against its task, in canonical form (each tie group's
    members in ascending order, so [[3, 0]] and [[0, 3]] give the same bytes)."""
    size = ranking["task__size"]
    if [item["position"] for item in items] != list(range(size)):
        raise ValueError(
            f"Ranking task {ranking['task_id']}: its items are not positions 0..{size - 1}"
        )
    try:
        return canonical_groups(ranking["ranking"], size)
    except RankingError as exc:
        raise ValueError(f"Ranking {ranking['id']} of task {ranking['task_id']}: {exc}") from None


def _layout(
    ranking: dict[str, Any], items: list[dict[str, Any]], chat: bool
) -> tuple[Any, list[Any]]:
    """The prompt and the K responses in the export's layout (pairs' rule, labeling.snapshots:
    in a chat export a string prompt becomes one user message and each response one
    assistant message)."""
    messages = ranking["task__prompt__messages"]
    prompt: Any = messages if messages is not None else ranking["task__prompt__text"]
    texts: list[Any] = [item["completion__text"] for item in items]
    if chat:
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        texts = [[{"role": "assistant", "content": text}] for text in texts]
    return prompt, texts


def _common(ranking: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "task_id": ranking["task_id"],
        "round": ranking["task__round__number"],
        "vote_count": ranking["task__vote_count"],
        "models": [item["completion__model_name"] for item in items],
    }


def _ranking_rows(scope: Scope, chat: bool) -> Iterator[dict[str, Any]]:
    for rankings, items in _task_groups(scope):
        prompt, responses = _layout(rankings[0], items, chat)
        for ranking in rankings:
            yield {
                "prompt": prompt,
                "responses": responses,
                "ranking": format_ranking(_groups_of(ranking, items)),
                "ranking_id": ranking["id"],
                **_common(ranking, items),
                "source": ranking["source"],
            }


def _source_of(rankings: Sequence[dict[str, Any]]) -> str:
    sources = {ranking["source"] for ranking in rankings}
    return sources.pop() if len(sources) == 1 else "mixed"


def _consensus_rows(scope: Scope, chat: bool) -> Iterator[dict[str, Any]]:
    """One row per task: the Borda consensus of its rankings in scope. A task whose consensus
    ties every response (two opposite rankings, say) orders nothing and is left out, as the
    engine would refuse such a row."""
    for rankings, items in _task_groups(scope):
        size = rankings[0]["task__size"]
        consensus = borda_consensus([_groups_of(r, items) for r in rankings], size)
        if len(consensus.groups) < 2:
            continue
        prompt, responses = _layout(rankings[0], items, chat)
        yield {
            "prompt": prompt,
            "responses": responses,
            "ranking": format_ranking(consensus.groups),
            **_common(rankings[0], items),
            "source": _source_of(rankings),
            "ranking_count": len(rankings),
            "ranking_ids": [r["id"] for r in rankings],
            # exact fractions, rounded to 6 digits so the bytes never depend on float noise
            "mean_ranks": [round(float(m), 6) for m in consensus.mean_ranks],
        }


def _pair_rows(scope: Scope, chat: bool, conversion: PairPolicy) -> Iterator[dict[str, Any]]:
    for rankings, items in _task_groups(scope):
        prompt, responses = _layout(rankings[0], items, chat)
        models = [item["completion__model_name"] for item in items]
        for ranking in rankings:
            groups = _groups_of(ranking, items)
            for pair in implied_pairs(groups, conversion, ranking["id"]):
                yield {
                    "prompt": prompt,
                    "chosen": responses[pair.chosen],
                    "rejected": responses[pair.rejected],
                    "round": ranking["task__round__number"],
                    "vote_count": ranking["task__vote_count"],
                    "chosen_model": models[pair.chosen],
                    "rejected_model": models[pair.rejected],
                    "source": ranking["source"],
                    "ranking_id": pair.ranking_id,
                    "task_id": ranking["task_id"],
                    "chosen_position": pair.chosen_position,
                    "rejected_position": pair.rejected_position,
                }


def iter_rows(snapshot: Snapshot, scope: Scope, chat: bool) -> Iterator[dict[str, Any]]:
    if snapshot.policy == SnapshotPolicy.RANKING_PAIRS:
        conversion: PairPolicy = snapshot.pair_conversion  # type: ignore[assignment]
        return _pair_rows(scope, chat, conversion)
    if snapshot.policy == SnapshotPolicy.RANKING_CONSENSUS:
        return _consensus_rows(scope, chat)
    return _ranking_rows(scope, chat)


def iter_lines(snapshot: Snapshot, scope: Scope, chat: bool) -> Iterator[bytes]:
    """The data.jsonl lines: each row's columns in the policy's order, compact JSON."""
    columns = columns_for(snapshot.policy)
    for row in iter_rows(snapshot, scope, chat):
        ordered = {column: row.get(column) for column in columns}
        yield (json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# ----------------------------------------------------------------------------------------------
# Parquet, manifest and dataset card


def parquet_fields(policy: str, chat: bool) -> list[tuple[str, Any]]:
    import pyarrow as pa

    text = pa.string()
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    turn = message if chat else text
    integer = pa.int64()
    if policy == SnapshotPolicy.RANKING_PAIRS:
        return [
            ("prompt", turn),
            ("chosen", turn),
            ("rejected", turn),
            ("round", integer),
            ("vote_count", integer),
            ("chosen_model", text),
            ("rejected_model", text),
            ("source", text),
            ("ranking_id", integer),
            ("task_id", integer),
            ("chosen_position", integer),
            ("rejected_position", integer),
        ]
    # Arrow lists hold one type, so a ranking is stored as its groups: [2, [0, 3], 1] is
    # [[2], [0, 3], [1]], which the engine's loader reads as the same ranking.
    fields = [
        ("prompt", turn),
        ("responses", pa.list_(turn)),
        ("ranking", pa.list_(pa.list_(integer))),
    ]
    if policy == SnapshotPolicy.RANKINGS:
        fields.append(("ranking_id", integer))
    fields += [
        ("task_id", integer),
        ("round", integer),
        ("vote_count", integer),
        ("models", pa.list_(text)),
        ("source", text),
    ]
    if policy == SnapshotPolicy.RANKING_CONSENSUS:
        fields += [
            ("ranking_count", integer),
            ("ranking_ids", pa.list_(integer)),
            ("mean_ranks", pa.list_(pa.float64())),
        ]
    return fields


def parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A data.jsonl row as the Parquet schema holds it (see parquet_fields)."""
    if "ranking" in row:
        row["ranking"] = [m if isinstance(m, list) else [m] for m in row["ranking"]]
    return row


def manifest_extra(snapshot: Snapshot) -> dict[str, Any]:
    """What a ranking snapshot's manifest says beyond a pair snapshot's."""
    extra: dict[str, Any] = {
        "format": "listwise" if is_listwise(snapshot.policy) else "pairs",
        "pair_conversion": snapshot.pair_conversion or None,
    }
    if snapshot.policy == SnapshotPolicy.RANKING_CONSENSUS:
        extra["aggregation"] = "borda"
    if is_listwise(snapshot.policy):
        extra["loss_type"] = "plackett_luce"
    return extra


def _describe(snapshot: Snapshot) -> str:
    if snapshot.policy == SnapshotPolicy.RANKING_PAIRS:
        conversion = PairConversion(snapshot.pair_conversion)
        return (
            f"Pairs converted from rankings ({conversion.label.lower()}, `pair_conversion: "
            f"{conversion.value}`): `prompt`, `chosen`, `rejected` are readable as-is by "
            '`datasets.load_dataset("json", ...)` and TRL\'s DPOTrainer, and train with any '
            "pair loss. Tied responses never form a pair. `ranking_id` names the ranking a "
            "pair came from and `task_id` its ranking task; `chosen_position` and "
            "`rejected_position` are the 0-based positions of the two responses in that "
            "ranking (0 is best; tied responses share a position)."
        )
    listwise = (
        "`responses` holds the task's K responses in canonical order and `ranking` indexes "
        "into it, best first; a nested list is a tie group (`[2, [0, 3], 1]`: 2 is best, 0 "
        "and 3 tie for second, 1 is last; in data.parquet every position is a list, "
        "`[[2], [0, 3], [1]]`). PrefLab trains these rows with `loss_type: plackett_luce`; "
        "`models` gives each response's model."
    )
    if snapshot.policy == SnapshotPolicy.RANKING_CONSENSUS:
        return (
            "One listwise row per ranking task: the Borda consensus of the task's rankings. "
            "Each ranking gives every response its rank (1 is best; a tie group shares the "
            "mean of the ranks it spans); the consensus orders the responses by their mean "
            "rank over the task's rankings (`mean_ranks`, per response) and ties those whose "
            "mean ranks are exactly equal. `ranking_count` rankings were aggregated "
            "(`ranking_ids`); a task whose consensus ties every response is left out. " + listwise
        )
    return (
        "One listwise row per ranking (one annotator's or one import's), `ranking_id` and "
        "`task_id` saying which. " + listwise
    )


def dataset_card(snapshot: Snapshot, rows: int, sha256: str, chat: bool) -> str:
    from labeling.snapshots import manifest_filters

    layout = "conversational (lists of chat messages)" if chat else "plain strings"
    policy = SnapshotPolicy(snapshot.policy)
    conversion = (
        f", pair conversion `{snapshot.pair_conversion}`" if snapshot.pair_conversion else ""
    )
    columns = ", ".join(f"`{c}`" for c in columns_for(snapshot.policy))
    filters = "\n".join(f"  - {k}: {v}" for k, v in manifest_filters(snapshot).items())
    return f"""# {snapshot.project.name}: ranking snapshot {snapshot.pk}

Exported by PrefLab.

- rows: {rows}
- policy: {policy.label} (`{policy.value}`{conversion})
- layout: {layout}
- data.jsonl SHA-256: `{sha256}`
- filters:
{filters}

{_describe(snapshot)}

Columns: {columns}.

Evaluation rounds and held-out prompts are never exported, nor the rankings of annotators a
reviewer excluded.
"""
