"""Export a project's votes as an immutable, content-hashed preference data set.

Files, in the artifact store (core.artifacts) under snapshots/<project id>/<snapshot id>/:
- data.jsonl:    one triple a line, keys sorted; the SHA-256 of this file names the snapshot
- data.parquet:  the same rows and columns
- manifest.json: policy, row count, hashes, the column list
- README.md:     a dataset card

Columns: `prompt`, `chosen`, `rejected` in the layout Hugging Face datasets and TRL read as-is:
all strings, or, when any prompt of the export is a chat, all conversational (prompt a list of
messages, chosen/rejected one-message assistant lists), so every row has the same schema.
Metadata: comparison_id, round, vote_count, agreement, chosen_model, rejected_model, vote_id and
strength (every-vote policy), adjudicated, source (human, judge, imported or mixed: who
decided the row); the reliability-weighted policy adds p_chosen and
weight. The raw-votes policy (for analysis, never trained on) has its own columns, RAW_COLUMNS.
The ranking policies (rankings, ranking_consensus, ranking_pairs) export ranking tasks; their
rows, columns and dataset card are labeling.ranking_snapshots'.

Which votes (docs/quality.md, "Snapshots"): never gold comparisons, evaluation rounds or
held-out (eval split) prompts; never annotators a reviewer excluded (AnnotatorExclusion, as of
the request); and the snapshot's filters: rounds, vote sources, flagged annotators (of the
newest quality report at the request), adjudicated comparisons only. A reviewer's adjudication
replaces the votes of its comparison in every policy. The filters are resolved to ids when the
snapshot is requested and stored on its row, so a rebuild reads the same votes.

Rows are streamed from the database in a fixed order and written as they come, so memory stays
flat however many votes there are (the reliability-weighted policy first fits Dawid-Skene over
the scope's votes: memory proportional to the votes, once); the same votes, policy and filters
give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from core.artifacts import get_store, stage
from core.jobs import JobKind, Recovery, enqueue, run_job
from labeling import ranking_snapshots
from labeling.models import (
    DECISIVE_CHOICES,
    RANKING_POLICIES,
    AnnotatorExclusion,
    Choice,
    JobStatus,
    Judge,
    Project,
    PromptSplit,
    RoundPurpose,
    Snapshot,
    SnapshotPolicy,
    Vote,
    VoteSource,
)

logger = logging.getLogger(__name__)

COLUMNS = [
    "prompt",
    "chosen",
    "rejected",
    "comparison_id",
    "round",
    "vote_count",
    "agreement",
    "chosen_model",
    "rejected_model",
    "vote_id",
    "strength",
    "adjudicated",
    # Who decided the row: human, judge, imported, or mixed (majority and weighted rows whose
    # votes came from more than one source); an adjudicated row is human.
    "source",
]
WEIGHTED_COLUMNS = [*COLUMNS, "p_chosen", "weight"]
RAW_COLUMNS = [
    "prompt",
    "response_a",
    "response_b",
    "comparison_id",
    "round",
    "vote_id",
    "annotator",
    "source",
    "choice",
    "strength",
    "left_side",
    "seconds",
    "model_a",
    "model_b",
    "adjudication",
]
# Policies whose rows are preference triples a run may train on.
TRAINABLE_POLICIES = (
    SnapshotPolicy.EVERY_VOTE,
    SnapshotPolicy.MAJORITY,
    SnapshotPolicy.RELIABILITY_WEIGHTED,
    # rankings (labeling.ranking_snapshots): listwise rows, or pairs converted from them
    *RANKING_POLICIES,
)
FILTER_KEYS = (
    "rounds",
    "sources",
    "exclude_flagged",
    "adjudicated_only",
    # AI judges (docs/judges.md): leave some judges out; drop judge votes where humans voted.
    "exclude_judges",
    "humans_win",
)
_STREAM_CHUNK = 5000
_PARQUET_BATCH = 2_000
_WRITE_LINES = 1000  # lines joined into one write() and one hash update
SNAPSHOT_JOB = "snapshot"
BUILD_SNAPSHOT_TASK = "workers.tasks.build_snapshot"
# What json.dumps(ensure_ascii=False) uses for a str, and an encoder with _canonical_line's
# settings for everything else (chat message lists): the fast path's bytes are the same.
_json_str = json.encoder.encode_basestring
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

_VOTE_FIELDS = (
    "id",
    "comparison_id",
    "choice",
    "strength",
    "chosen_id",
    "comparison__round__number",
    "comparison__vote_count",
    "comparison__prompt__text",
    "comparison__prompt__messages",
    "comparison__completion_a_id",
    "comparison__completion_a__text",
    "comparison__completion_a__model_name",
    "comparison__completion_b_id",
    "comparison__completion_b__text",
    "comparison__completion_b__model_name",
    "comparison__adjudication__choice",
    "source",
)
# What the raw-votes policy reads beyond _VOTE_FIELDS.
_RAW_FIELDS = ("annotator_id", "judge_id", "left_side", "time_taken_ms")


def snapshot_prefix(snapshot: Snapshot) -> str:
    """The artifact store key of a snapshot's directory: snapshots/<project id>/<snapshot id>."""
    return f"snapshots/{snapshot.project_id}/{snapshot.pk}"


def snapshot_dir(snapshot: Snapshot) -> Path:
    """Where the builder puts the files before publishing them: the artifact itself on the
    local store (publishing is a rename), a worker-local directory for S3."""
    return get_store().work_dir(snapshot_prefix(snapshot))


def _resolve_filters(project: Project, policy: str, filters: dict[str, Any]) -> dict[str, Any]:
    """Check the requested filters and resolve them to what the build reads (ids), so that a
    rebuild reads exactly the same votes. ``ValueError`` names anything wrong."""
    from labeling.quality.jobs import latest_report

    if not isinstance(filters, dict):
        raise ValueError("filters must be an object with keys " + ", ".join(FILTER_KEYS))
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(f"Unknown filter(s) {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}.")
    resolved: dict[str, Any] = {}
    rounds = filters.get("rounds")
    if rounds is not None and rounds != []:
        if not isinstance(rounds, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in rounds
        ):
            raise ValueError("rounds must be a list of round numbers, e.g. [2] or [1, 3].")
        found = dict(project.rounds.filter(number__in=rounds).values_list("number", "purpose"))
        missing = sorted(set(rounds) - set(found))
        if missing:
            raise ValueError(
                f"Project {project.name!r} has no round {', '.join(map(str, missing))}."
            )
        evaluation = sorted(n for n, purpose in found.items() if purpose == RoundPurpose.EVALUATION)
        if evaluation:
            raise ValueError(
                f"Round {', '.join(map(str, evaluation))} is an evaluation round: its votes "
                "measure checkpoints and never go into a snapshot."
            )
        resolved["rounds"] = sorted(set(rounds))
    sources = filters.get("sources")
    if sources is not None and sources != []:
        if not isinstance(sources, list) or not set(sources) <= set(VoteSource.values):
            raise ValueError(f"sources must be a list of {', '.join(VoteSource.values)}.")
        resolved["sources"] = sorted(set(sources))
    exclude_judges = filters.get("exclude_judges")
    if exclude_judges is not None and exclude_judges != []:
        # Judge ids or names (the snapshot form takes names); stored as ids.
        if not isinstance(exclude_judges, list) or not all(
            isinstance(j, (int, str)) and not isinstance(j, bool) for j in exclude_judges
        ):
            raise ValueError("exclude_judges must be a list of judge ids or names, e.g. [3].")
        judges = dict(Judge.objects.filter(project=project).values_list("name", "id"))
        ids = set(judges.values())
        wanted = {judges.get(j, j) if isinstance(j, str) else j for j in exclude_judges}
        unknown_judges = sorted(str(j) for j in wanted if j not in ids)
        if unknown_judges:
            raise ValueError(f"Project {project.name!r} has no judge {', '.join(unknown_judges)}.")
        resolved["exclude_judges"] = sorted(int(j) for j in wanted)
    humans_win = filters.get("humans_win", False)
    if not isinstance(humans_win, bool):
        raise ValueError("humans_win must be true or false.")
    if humans_win:
        resolved["humans_win"] = True
    for flag in ("exclude_flagged", "adjudicated_only"):
        value = filters.get(flag, False)
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be true or false.")
        resolved[flag] = value
    if resolved["exclude_flagged"]:
        report = latest_report(project)
        if report is None:
            raise ValueError(
                "exclude_flagged needs the project's quality figures: compute them on the "
                "quality page first."
            )
        resolved["quality_report"] = report.pk
        resolved["flagged_annotators"] = sorted(int(a) for a in report.data.get("flagged", []))
    # Not a filter: a reviewer's exclusion always applies.
    resolved["excluded_annotators"] = sorted(
        AnnotatorExclusion.objects.filter(project=project, lifted_at__isnull=True).values_list(
            "annotator_id", flat=True
        )
    )
    return resolved


def request_snapshot(
    project: Project,
    policy: str,
    min_agreement: float = 0.5,
    created_by: Any = None,
    filters: dict[str, Any] | None = None,
    pair_conversion: str = "",
) -> Snapshot:
    """Create a queued snapshot row; the caller enqueues the build after commit.

    ``pair_conversion`` (all, best_worst, adjacent) is required by the ranking_pairs policy
    and refused by every other one (labeling.ranking_snapshots.check_request)."""
    if policy not in SnapshotPolicy.values:
        raise ValueError(f"Unknown policy {policy!r}; use {', '.join(SnapshotPolicy.values)}.")
    if not 0.0 <= min_agreement < 1.0:
        raise ValueError("min_agreement must be at least 0 and below 1.")
    ranking_snapshots.check_request(project, policy, pair_conversion, filters or {})
    resolved = _resolve_filters(project, policy, filters or {})
    return Snapshot.objects.create(
        project=project,
        policy=policy,
        min_agreement=min_agreement,
        created_by=created_by,
        filters=resolved,
        pair_conversion=pair_conversion,
    )


@dataclass(frozen=True)
class Scope:
    """Which votes a snapshot reads, from its project and its resolved filters."""

    project_id: int
    rounds: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()
    excluded: tuple[int, ...] = ()
    adjudicated_only: bool = False
    excluded_judges: tuple[int, ...] = ()
    # A comparison with any human or imported vote in the scope keeps only those.
    humans_win: bool = False

    def queryset(self) -> QuerySet[Vote]:
        votes = (
            Vote.objects.filter(comparison__project_id=self.project_id, comparison__is_gold=False)
            .exclude(comparison__round__purpose=RoundPurpose.EVALUATION)
            .exclude(comparison__prompt__split=PromptSplit.EVAL)
        )
        if self.rounds:
            votes = votes.filter(comparison__round__number__in=self.rounds)
        if self.sources:
            votes = votes.filter(source__in=self.sources)
        if self.excluded_judges:
            votes = votes.exclude(judge_id__in=self.excluded_judges)
        if self.adjudicated_only:
            votes = votes.filter(comparison__adjudication__isnull=False)
        if self.excluded:
            # An adjudicated comparison keeps its votes (they are replaced by the decision, and
            # carry the prompt and texts), so excluding its voters does not lose the decision.
            votes = votes.exclude(
                Q(annotator_id__in=self.excluded) & Q(comparison__adjudication__isnull=True)
            )
        if self.humans_win:
            others = votes.filter(comparison_id=OuterRef("comparison_id")).exclude(
                source=VoteSource.JUDGE
            )
            votes = votes.exclude(Q(source=VoteSource.JUDGE) & Exists(others))
        return votes


def snapshot_scope(snapshot: Snapshot) -> Scope:
    filters = snapshot.filters or {}
    excluded = set(filters.get("excluded_annotators", []))
    if filters.get("exclude_flagged"):
        excluded |= set(filters.get("flagged_annotators", []))
    return Scope(
        project_id=snapshot.project_id,
        rounds=tuple(filters.get("rounds") or ()),
        sources=tuple(filters.get("sources") or ()),
        excluded=tuple(sorted(excluded)),
        adjudicated_only=bool(filters.get("adjudicated_only")),
        excluded_judges=tuple(filters.get("exclude_judges") or ()),
        humans_win=bool(filters.get("humans_win")),
    )


def _scope_of(target: Scope | int) -> Scope:
    # A bare project id means the project's whole default scope (no filters).
    return target if isinstance(target, Scope) else Scope(project_id=target)


def _votes(scope: Scope, extra: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    return (
        scope.queryset()
        .order_by("comparison_id", "id")
        .values(*_VOTE_FIELDS, *extra)
        .iterator(chunk_size=_STREAM_CHUNK)
    )


def _comparison_groups(
    target: Scope | int, extra: tuple[str, ...] = ()
) -> Iterator[list[dict[str, Any]]]:
    """The streamed votes, one list per comparison (they arrive ordered by comparison)."""
    group: list[dict[str, Any]] = []
    for vote in _votes(_scope_of(target), extra):
        if group and group[0]["comparison_id"] != vote["comparison_id"]:
            yield group
            group = []
        group.append(vote)
    if group:
        yield group


def _project_has_chat(target: Scope | int) -> bool:
    return _scope_of(target).queryset().filter(comparison__prompt__messages__isnull=False).exists()


def _layout(vote: dict[str, Any], chat: bool) -> tuple[Any, Any, Any]:
    """The prompt and the two responses (A, B) in the export's layout."""
    messages = vote["comparison__prompt__messages"]
    prompt: Any = messages if messages is not None else vote["comparison__prompt__text"]
    text_a: Any = vote["comparison__completion_a__text"]
    text_b: Any = vote["comparison__completion_b__text"]
    if chat:
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        text_a = [{"role": "assistant", "content": text_a}]
        text_b = [{"role": "assistant", "content": text_b}]
    return prompt, text_a, text_b


def _triple(vote: dict[str, Any], chat: bool, a_wins: bool | None = None) -> dict[str, Any]:
    """The (prompt, chosen, rejected) row of a comparison; the winner is the vote's chosen
    completion unless ``a_wins`` says which side won (an adjudication, a fitted model)."""
    if a_wins is None:
        a_wins = vote["chosen_id"] == vote["comparison__completion_a_id"]
    winner, loser = ("a", "b") if a_wins else ("b", "a")
    prompt, text_a, text_b = _layout(vote, chat)
    chosen, rejected = (text_a, text_b) if a_wins else (text_b, text_a)
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "comparison_id": vote["comparison_id"],
        "round": vote["comparison__round__number"],
        "vote_count": vote["comparison__vote_count"],
        "chosen_model": vote[f"comparison__completion_{winner}__model_name"],
        "rejected_model": vote[f"comparison__completion_{loser}__model_name"],
        "adjudicated": False,
        "source": vote["source"],
    }


def _source_of(votes: list[dict[str, Any]]) -> str:
    """The one source of these votes, or "mixed"."""
    sources = {vote["source"] for vote in votes}
    return sources.pop() if len(sources) == 1 else "mixed"


def _adjudicated_row(group: list[dict[str, Any]], chat: bool) -> dict[str, Any] | None:
    """The row a reviewer's decision gives: a triple when it named a winner, else none."""
    decision = group[0]["comparison__adjudication__choice"]
    if decision not in DECISIVE_CHOICES:
        return None
    row = _triple(group[0], chat, a_wins=decision == Choice.A)
    row.update(agreement=1.0, vote_id=None, strength=None, adjudicated=True, source="human")
    return row


def _every_vote_rows(target: Scope | int, chat: bool) -> Iterator[dict[str, Any]]:
    for group in _comparison_groups(target):
        yield from _every_vote_group(group, chat)


def _every_vote_group(group: list[dict[str, Any]], chat: bool) -> Iterator[dict[str, Any]]:
    if group[0]["comparison__adjudication__choice"]:
        row = _adjudicated_row(group, chat)
        if row is not None:
            yield row
        return
    decisive = [vote for vote in group if vote["choice"] in DECISIVE_CHOICES]
    for vote in decisive:
        agreeing = sum(1 for other in decisive if other["chosen_id"] == vote["chosen_id"])
        row = _triple(vote, chat)
        row.update(
            agreement=round(agreeing / len(decisive), 6),
            vote_id=vote["id"],
            strength=vote["strength"] or None,
        )
        yield row


def _json_bytes(value: Any) -> bytes:
    if value is None:
        return b"null"
    if isinstance(value, str):
        return _json_str(value).encode()
    return _JSON.encode(value).encode()


def _every_vote_lines(target: Scope | int, chat: bool) -> Iterator[bytes]:
    """_canonical_line() of each row _every_vote_rows() yields, byte for byte, but faster.

    The votes of one comparison share its prompt, texts and model names: they are JSON-encoded
    once per comparison, and each vote's line is joined from those pieces and its own fields.
    """
    for group in _comparison_groups(target):
        yield from _every_vote_group_lines(group, chat)


def _every_vote_group_lines(group: list[dict[str, Any]], chat: bool) -> Iterator[bytes]:
    if group[0]["comparison__adjudication__choice"]:
        # One row at most: the plain definition is fast enough.
        yield from (_canonical_line(row) for row in _every_vote_group(group, chat))
        return
    decisive = [vote for vote in group if vote["choice"] in DECISIVE_CHOICES]
    if not decisive:
        return
    first = decisive[0]
    prompt, text_a, text_b = _layout(first, chat)
    head = b'{"prompt":' + _json_bytes(prompt)
    a, b = _json_bytes(text_a), _json_bytes(text_b)
    model_a = _json_bytes(first["comparison__completion_a__model_name"])
    model_b = _json_bytes(first["comparison__completion_b__model_name"])
    counts = b',"comparison_id":%d,"round":%d,"vote_count":%d,"agreement":' % (
        first["comparison_id"],
        first["comparison__round__number"],
        first["comparison__vote_count"],
    )
    a_wins = (
        head + b',"chosen":' + a + b',"rejected":' + b + counts,
        b',"chosen_model":' + model_a + b',"rejected_model":' + model_b + b',"vote_id":',
    )
    b_wins = (
        head + b',"chosen":' + b + b',"rejected":' + a + counts,
        b',"chosen_model":' + model_b + b',"rejected_model":' + model_a + b',"vote_id":',
    )
    a_id = first["comparison__completion_a_id"]
    for vote in decisive:
        agreeing = sum(1 for other in decisive if other["chosen_id"] == vote["chosen_id"])
        start, models = a_wins if vote["chosen_id"] == a_id else b_wins
        yield b"".join(
            (
                start,
                repr(round(agreeing / len(decisive), 6)).encode(),
                models,
                b"%d" % vote["id"],
                b',"strength":',
                _json_bytes(vote["strength"] or None),
                b',"adjudicated":false,"source":',
                _json_bytes(vote["source"]),
                b"}\n",
            )
        )


def _majority_rows(
    target: Scope | int, chat: bool, min_agreement: float
) -> Iterator[dict[str, Any]]:
    for group in _comparison_groups(target):
        yield from _majority_group(group, chat, min_agreement)


def _majority_group(
    group: list[dict[str, Any]], chat: bool, min_agreement: float
) -> Iterator[dict[str, Any]]:
    """One triple when decisive votes agree on a winner by more than min_agreement.

    Ties and both-bad votes count against agreement (they are votes that did not pick the
    winner), so a comparison most annotators called a tie yields nothing.
    """
    if group[0]["comparison__adjudication__choice"]:
        row = _adjudicated_row(group, chat)
        if row is not None:
            yield row
        return
    decisive = [vote for vote in group if vote["choice"] in DECISIVE_CHOICES]
    if not decisive:
        return
    counts: dict[int, int] = {}
    for vote in decisive:
        counts[vote["chosen_id"]] = counts.get(vote["chosen_id"], 0) + 1
    winner_id, winner_votes = max(counts.items(), key=lambda item: (item[1], -item[0]))
    if list(counts.values()).count(winner_votes) > 1:
        return
    agreement = winner_votes / len(group)
    if agreement <= min_agreement:
        return
    representative = next(vote for vote in decisive if vote["chosen_id"] == winner_id)
    row = _triple(representative, chat)
    row.update(
        agreement=round(agreement, 6), vote_id=None, strength=None, source=_source_of(decisive)
    )
    yield row


def _rater(vote: dict[str, Any]) -> str:
    """Who cast a vote, as one label space for the reliability model: an annotator, a judge,
    or (an imported vote, author unknown) a rater of its own."""
    if vote["annotator_id"] is not None:
        return f"u{vote['annotator_id']}"
    if vote["judge_id"] is not None:
        return f"j{vote['judge_id']}"
    return f"i{vote['id']}"


def soft_labels_for(scope: Scope) -> dict[int, tuple[float, float]]:
    """Dawid-Skene (labeling.quality) over the scope's votes, every choice included: per
    comparison, (P(A beats B) with a tie as half a win, P(a real preference pair)), both
    rounded to 6 digits so that the files' bytes do not depend on the last bits of a float."""
    import numpy as np
    import pandas as pd

    from labeling.quality.reliability import fit_dawid_skene, soft_labels
    from labeling.quality.votes import encode_votes

    fields = ("id", "comparison_id", "annotator_id", "judge_id", "choice", "left_side")
    rows = list(scope.queryset().order_by("comparison_id", "id").values_list(*fields))
    if not rows:
        return {}
    frame = pd.DataFrame(rows, columns=list(fields))
    raters = [
        _rater({"id": i, "annotator_id": a, "judge_id": j})
        for i, a, j in zip(frame["id"], frame["annotator_id"], frame["judge_id"], strict=True)
    ]
    # Only comparison, annotator and choice reach the model; the other columns the vote table
    # requires are filled with neutral values (no time, no length, one round, no gold).
    table = pd.DataFrame(
        {
            "comparison": frame["comparison_id"].to_numpy(dtype=np.int64),
            "annotator": raters,
            "choice": frame["choice"],
            "left_side": frame["left_side"],
            "seconds": np.nan,
            "len_a": 0.0,
            "len_b": 0.0,
            "model_a": "",
            "model_b": "",
            "round": 1,
            "gold": None,
        }
    )
    encoded = encode_votes(table)
    labels = soft_labels(encoded, fit_dawid_skene(encoded))
    return {
        int(c): (round(float(p), 6), round(float(w), 6))
        for c, p, w in zip(labels["comparison"], labels["p_chosen"], labels["weight"], strict=True)
    }


def _weighted_rows(scope: Scope, chat: bool) -> Iterator[dict[str, Any]]:
    """One row per comparison with a decisive vote: the side the fitted model prefers wins,
    ``p_chosen`` is its probability of beating the other, ``weight`` the probability that the
    pair is a real preference pair. A comparison the model cannot split (p = 0.5) or calls
    both bad for certain (weight 0) is left out; an adjudicated one is exported as decided,
    with p_chosen and weight 1."""
    labels = soft_labels_for(scope)
    for group in _comparison_groups(scope):
        if group[0]["comparison__adjudication__choice"]:
            row = _adjudicated_row(group, chat)
            if row is not None:
                row.update(p_chosen=1.0, weight=1.0)
                yield row
            continue
        decisive = [vote for vote in group if vote["choice"] in DECISIVE_CHOICES]
        if not decisive:
            continue
        p_a, weight = labels[group[0]["comparison_id"]]
        if p_a == 0.5 or weight <= 0.0:
            continue
        a_wins = p_a > 0.5
        row = _triple(group[0], chat, a_wins=a_wins)
        winner = Choice.A if a_wins else Choice.B
        agreeing = sum(1 for vote in group if vote["choice"] == winner)
        row.update(
            agreement=round(agreeing / len(group), 6),
            vote_id=None,
            strength=None,
            p_chosen=p_a if a_wins else round(1.0 - p_a, 6),
            weight=weight,
            source=_source_of(decisive),
        )
        yield row


def pseudonym(project_id: int, annotator_id: int) -> str:
    """A stable stand-in for an annotator in raw-votes exports: an HMAC of the project and the
    user id keyed by SECRET_KEY, so it is the same in every snapshot of the project, differs
    between projects, and cannot be turned back into the user without the key."""
    digest = salted_hmac("preflab.snapshots.annotator", f"{project_id}:{annotator_id}")
    return "a-" + digest.hexdigest()[:16]


def _raw_rows(scope: Scope, chat: bool) -> Iterator[dict[str, Any]]:
    for group in _comparison_groups(scope, _RAW_FIELDS):
        prompt, text_a, text_b = _layout(group[0], chat)
        if chat:  # the responses stay strings: raw votes are for analysis, not for TRL
            text_a, text_b = text_a[0]["content"], text_b[0]["content"]
        for vote in group:
            if vote["annotator_id"] is not None:
                who: str | None = pseudonym(scope.project_id, vote["annotator_id"])
            elif vote["judge_id"] is not None:
                who = f"judge-{vote['judge_id']}"
            else:
                who = None
            ms = vote["time_taken_ms"]
            yield {
                "prompt": prompt,
                "response_a": text_a,
                "response_b": text_b,
                "comparison_id": vote["comparison_id"],
                "round": vote["comparison__round__number"],
                "vote_id": vote["id"],
                "annotator": who,
                "source": vote["source"],
                "choice": vote["choice"],
                "strength": vote["strength"] or None,
                "left_side": vote["left_side"] or None,
                "seconds": None if ms is None else ms / 1000.0,
                "model_a": vote["comparison__completion_a__model_name"],
                "model_b": vote["comparison__completion_b__model_name"],
                "adjudication": vote["comparison__adjudication__choice"] or None,
            }


def columns_for(policy: str) -> list[str]:
    if ranking_snapshots.is_ranking_policy(policy):
        return ranking_snapshots.columns_for(policy)
    if policy == SnapshotPolicy.RAW_VOTES:
        return RAW_COLUMNS
    if policy == SnapshotPolicy.RELIABILITY_WEIGHTED:
        return WEIGHTED_COLUMNS
    return COLUMNS


def snapshot_has_chat(snapshot: Snapshot) -> bool:
    """Whether the export is conversational: any of its prompts is a chat."""
    scope = snapshot_scope(snapshot)
    if ranking_snapshots.is_ranking_policy(snapshot.policy):
        return ranking_snapshots.has_chat(scope)
    return _project_has_chat(scope)


def iter_snapshot_rows(snapshot: Snapshot) -> Iterator[dict[str, Any]]:
    scope = snapshot_scope(snapshot)
    chat = snapshot_has_chat(snapshot)
    if ranking_snapshots.is_ranking_policy(snapshot.policy):
        return ranking_snapshots.iter_rows(snapshot, scope, chat)
    if snapshot.policy == SnapshotPolicy.EVERY_VOTE:
        return _every_vote_rows(scope, chat)
    if snapshot.policy == SnapshotPolicy.RELIABILITY_WEIGHTED:
        return _weighted_rows(scope, chat)
    if snapshot.policy == SnapshotPolicy.RAW_VOTES:
        return _raw_rows(scope, chat)
    return _majority_rows(scope, chat, snapshot.min_agreement)


def iter_snapshot_lines(snapshot: Snapshot, chat: bool) -> Iterator[bytes]:
    """The data.jsonl lines, in order: _canonical_line() of each iter_snapshot_rows() row."""
    scope = snapshot_scope(snapshot)
    columns = columns_for(snapshot.policy)
    if ranking_snapshots.is_ranking_policy(snapshot.policy):
        return ranking_snapshots.iter_lines(snapshot, scope, chat)
    if snapshot.policy == SnapshotPolicy.EVERY_VOTE:
        return _every_vote_lines(scope, chat)
    if snapshot.policy == SnapshotPolicy.RELIABILITY_WEIGHTED:
        rows = _weighted_rows(scope, chat)
    elif snapshot.policy == SnapshotPolicy.RAW_VOTES:
        rows = _raw_rows(scope, chat)
    else:
        rows = _majority_rows(scope, chat, snapshot.min_agreement)
    return (_canonical_line(row, columns) for row in rows)


def _canonical_line(row: dict[str, Any], columns: list[str] = COLUMNS) -> bytes:
    ordered = {column: row.get(column) for column in columns}
    return (
        json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n"
    ).encode()


def _parquet_schema(chat: bool, policy: str = SnapshotPolicy.EVERY_VOTE) -> Any:
    import pyarrow as pa

    text = pa.string()
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    turn = message if chat else text
    if ranking_snapshots.is_ranking_policy(policy):
        return pa.schema(ranking_snapshots.parquet_fields(policy, chat))
    if policy == SnapshotPolicy.RAW_VOTES:
        fields = [
            ("prompt", turn),
            ("response_a", text),
            ("response_b", text),
            ("comparison_id", pa.int64()),
            ("round", pa.int64()),
            ("vote_id", pa.int64()),
            ("annotator", text),
            ("source", text),
            ("choice", text),
            ("strength", text),
            ("left_side", text),
            ("seconds", pa.float64()),
            ("model_a", text),
            ("model_b", text),
            ("adjudication", text),
        ]
    else:
        fields = [
            ("prompt", turn),
            ("chosen", turn),
            ("rejected", turn),
            ("comparison_id", pa.int64()),
            ("round", pa.int64()),
            ("vote_count", pa.int64()),
            ("agreement", pa.float64()),
            ("chosen_model", text),
            ("rejected_model", text),
            ("vote_id", pa.int64()),
            ("strength", text),
            ("adjudicated", pa.bool_()),
            ("source", text),
        ]
        if policy == SnapshotPolicy.RELIABILITY_WEIGHTED:
            fields += [("p_chosen", pa.float64()), ("weight", pa.float64())]
    # Every column is nullable (Arrow's default); the ones a policy never fills are null.
    return pa.schema(fields)


def _write_parquet(
    jsonl_path: Path, parquet_path: Path, chat: bool, policy: str = SnapshotPolicy.EVERY_VOTE
) -> str:
    """Convert the finished JSONL in batches; returns the Parquet file's SHA-256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(chat, policy)
    ranked = ranking_snapshots.is_ranking_policy(policy)
    # Fixed writer settings: the same rows always give the same bytes.
    with (
        pq.ParquetWriter(
            parquet_path, schema, compression="zstd", write_statistics=False
        ) as writer,
        jsonl_path.open("rb") as source,
    ):
        batch: list[dict[str, Any]] = []
        for line in source:
            row = json.loads(line)
            batch.append(ranking_snapshots.parquet_row(row) if ranked else row)
            if len(batch) >= _PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return _sha256(parquet_path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def manifest_filters(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot's filters as the manifest and the dataset card state them: annotators are
    counted, never named."""
    filters = snapshot.filters or {}
    return {
        "rounds": filters.get("rounds") or "all",
        "sources": filters.get("sources") or "all",
        "exclude_flagged": bool(filters.get("exclude_flagged")),
        "flagged_annotators_excluded": len(filters.get("flagged_annotators", []))
        if filters.get("exclude_flagged")
        else 0,
        "quality_report": filters.get("quality_report"),
        "adjudicated_only": bool(filters.get("adjudicated_only")),
        "judges_excluded": filters.get("exclude_judges") or [],
        "humans_win": bool(filters.get("humans_win")),
        "annotators_excluded_by_reviewers": len(filters.get("excluded_annotators", [])),
        "evaluation_rounds": "never included",
        "held_out_prompts": "never included",
    }


def _dataset_card(snapshot: Snapshot, rows: int, sha256: str, chat: bool) -> str:
    if ranking_snapshots.is_ranking_policy(snapshot.policy):
        return ranking_snapshots.dataset_card(snapshot, rows, sha256, chat)
    layout = "conversational (lists of chat messages)" if chat else "plain strings"
    policy = SnapshotPolicy(snapshot.policy).label
    columns = ", ".join(f"`{c}`" for c in columns_for(snapshot.policy))
    filters = "\n".join(f"  - {k}: {v}" for k, v in manifest_filters(snapshot).items())
    if snapshot.policy == SnapshotPolicy.RAW_VOTES:
        kind = (
            "Every vote, ties and both-bad included, for your own analysis. Not preference "
            "triples: PrefLab does not train on this export. Annotators are pseudonymised "
            "(`annotator`: an HMAC of project and user, the same across this project's "
            "snapshots)."
        )
    else:
        kind = (
            "Preference triples: `prompt`, `chosen`, `rejected` are readable as-is by "
            '`datasets.load_dataset("json", ...)` and TRL\'s DPOTrainer. Ties and both-bad '
            "votes are not exported."
        )
    weighted = (
        "\n`p_chosen` is the Dawid-Skene model's probability that `chosen` beats `rejected` "
        "(a tie counted as half a win); `weight` its probability that the pair is a real "
        "preference pair (not both bad). PrefLab's engine weights each pair's loss by "
        "`weight`.\n"
        if snapshot.policy == SnapshotPolicy.RELIABILITY_WEIGHTED
        else ""
    )
    return f"""# {snapshot.project.name}: preference snapshot {snapshot.pk}

Exported by PrefLab.

- rows: {rows}
- policy: {policy} (`{snapshot.policy}`, min agreement {snapshot.min_agreement})
- layout: {layout}
- data.jsonl SHA-256: `{sha256}`
- filters:
{filters}

{kind}

Columns: {columns}.
{weighted}
Gold (quality-control) comparisons, evaluation rounds and held-out prompts are never exported.
A reviewer's adjudication replaces the votes of its comparison (`adjudicated`/`adjudication`).
"""


def build_snapshot(snapshot_id: int) -> Snapshot | None:
    """Build a queued snapshot through the job wrapper (core.jobs.run_job): claim, heartbeat,
    traceback on failure. Returns the published row, or None if it was not queued."""
    return run_job(SNAPSHOT_JOB, snapshot_id)  # type: ignore[return-value]


def snapshot_temp_dir(snapshot: Snapshot) -> Path:
    final_dir = snapshot_dir(snapshot)
    return final_dir.with_name(f".{final_dir.name}.tmp")


def clean_snapshot_temp(snapshot: Snapshot) -> None:
    """What a build killed mid-way leaves: its temporary directory (the watchdog calls this)."""
    shutil.rmtree(snapshot_temp_dir(snapshot), ignore_errors=True)


def _build(claimed: Snapshot) -> None:
    """Write a claimed snapshot's files and publish it.

    Files are written to a temporary directory, fsynced and renamed into place, then the row
    becomes SUCCEEDED in one conditional update: a crash leaves no half-written snapshot
    behind. A rebuild after a lost worker starts from an empty temporary directory.
    """
    snapshot_id = claimed.pk
    snapshot = Snapshot.objects.select_related("project").get(id=snapshot_id)
    temp_dir = snapshot_temp_dir(snapshot)
    try:
        shutil.rmtree(temp_dir, ignore_errors=True)
        temp_dir.mkdir(parents=True)
        jsonl_path = temp_dir / "data.jsonl"
        digest = hashlib.sha256()
        rows = 0
        # One transaction: the chat check and the rows see the same votes, and the streaming
        # query runs as a plain cursor. Outside a transaction (autocommit) Django declares it
        # WITH HOLD, and PostgreSQL materialises the whole result set before the first row.
        with transaction.atomic(), jsonl_path.open("wb") as out:
            chat = snapshot_has_chat(snapshot)
            pending: list[bytes] = []
            for line in iter_snapshot_lines(snapshot, chat):
                pending.append(line)
                if len(pending) >= _WRITE_LINES:
                    block = b"".join(pending)
                    digest.update(block)
                    out.write(block)
                    rows += len(pending)
                    pending = []
            block = b"".join(pending)
            digest.update(block)
            out.write(block)
            rows += len(pending)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        parquet_sha256 = _write_parquet(
            jsonl_path, temp_dir / "data.parquet", chat, snapshot.policy
        )
        manifest = {
            "snapshot_id": snapshot.pk,
            "project": snapshot.project.name,
            "project_id": snapshot.project_id,
            "policy": snapshot.policy,
            "min_agreement": snapshot.min_agreement,
            "rows": rows,
            "layout": "conversational" if chat else "string",
            "trainable": snapshot.policy in TRAINABLE_POLICIES,
            "filters": manifest_filters(snapshot),
            "columns": columns_for(snapshot.policy),
            "files": {
                "data.jsonl": {"sha256": sha256},
                "data.parquet": {"sha256": parquet_sha256},
            },
        }
        if ranking_snapshots.is_ranking_policy(snapshot.policy):
            manifest.update(ranking_snapshots.manifest_extra(snapshot))
        _fsync_write(temp_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
        _fsync_write(temp_dir / "README.md", _dataset_card(snapshot, rows, sha256, chat).encode())
        for path in temp_dir.iterdir():
            path.chmod(0o444)
        # The row is not published, so nothing under its key is either: what may be there is
        # left by a build that died between publishing and the update below.
        key = snapshot_prefix(snapshot)
        store = get_store()
        store.delete(key)
        store.publish(temp_dir, key, immutable=True, move=True)
        with transaction.atomic():
            Snapshot.objects.filter(
                id=snapshot_id, status=JobStatus.RUNNING, worker=claimed.worker
            ).update(
                status=JobStatus.SUCCEEDED,
                row_count=rows,
                sha256=sha256,
                parquet_sha256=parquet_sha256,
                path=key,
                finished_at=timezone.now(),
            )
    except Exception:
        # The job wrapper marks the row failed and stores the traceback.
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    logger.info("snapshot %s ready: %s rows, sha256 %s", snapshot_id, rows, sha256)


FILE_NAMES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "manifest": "manifest.json"}


def snapshot_key(snapshot: Snapshot, file_format: str = "jsonl") -> str:
    """The artifact store key of a ready snapshot's file, e.g. snapshots/3/7/data.jsonl."""
    if snapshot.status != JobStatus.SUCCEEDED:
        raise FileNotFoundError(f"Snapshot {snapshot.pk} is {snapshot.status}, not ready.")
    return f"{snapshot.path}/{FILE_NAMES[file_format]}"


def snapshot_file(snapshot: Snapshot, file_format: str = "jsonl") -> Path:
    """A local path of a ready snapshot's file: the store's own file on the local backend,
    a copy staged in the worker's cache on S3."""
    return stage(snapshot_key(snapshot, file_format))


def export_snapshot(
    project: Project,
    policy: str,
    min_agreement: float = 0.5,
    created_by: Any = None,
    filters: dict[str, Any] | None = None,
    pair_conversion: str = "",
) -> Snapshot:
    """Queue a snapshot and send its build task once the row is committed."""
    with transaction.atomic():
        snapshot = request_snapshot(
            project, policy, min_agreement, created_by, filters, pair_conversion
        )
        enqueue(BUILD_SNAPSHOT_TASK, snapshot.pk)
    return snapshot


def snapshot_job_kind() -> JobKind:
    """Registered by LabelingConfig.ready(): a lost build is run again from scratch."""
    return JobKind(
        name=SNAPSHOT_JOB,
        model=Snapshot,
        task_name=BUILD_SNAPSHOT_TASK,
        execute=_build,
        recovery=Recovery.RERUN,
        may_retry=lambda job: job.attempts < settings.PREFLAB_MAX_RUN_ATTEMPTS,
        cleanup=clean_snapshot_temp,
        lost_hint="Export the snapshot again.",
    )
