"""Export a project's votes as an immutable, content-hashed preference data set.

Files, in the artifact store (core.artifacts) under snapshots/<project id>/<snapshot id>/:
- data.jsonl:    one triple a line, keys sorted; the SHA-256 of this file names the snapshot
- data.parquet:  the same rows and columns
- manifest.json: policy, row count, hashes, the column list
- README.md:     a dataset card

Columns: `prompt`, `chosen`, `rejected` in the layout Hugging Face datasets and TRL read as-is:
all strings, or, when any prompt of the export is a chat, all conversational (prompt a list of
messages, chosen/rejected one-message assistant lists), so every row has the same schema.
Metadata: comparison_id, round, vote_count, agreement, chosen_model, rejected_model, and for the
every-vote policy vote_id and strength.

Rows are streamed from the database in a fixed order and written as they come, so memory stays
flat however many votes there are; the same votes and policy give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.artifacts import get_store, stage
from core.jobs import JobKind, Recovery, enqueue, run_job
from labeling.models import (
    DECISIVE_CHOICES,
    JobStatus,
    Project,
    Snapshot,
    SnapshotPolicy,
    Vote,
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
]
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
)


def snapshot_prefix(snapshot: Snapshot) -> str:
    """The artifact store key of a snapshot's directory: snapshots/<project id>/<snapshot id>."""
    return f"snapshots/{snapshot.project_id}/{snapshot.pk}"


def snapshot_dir(snapshot: Snapshot) -> Path:
    """Where the builder puts the files before publishing them: the artifact itself on the
    local store (publishing is a rename), a worker-local directory for S3."""
    return get_store().work_dir(snapshot_prefix(snapshot))


def request_snapshot(
    project: Project, policy: str, min_agreement: float = 0.5, created_by: Any = None
) -> Snapshot:
    """Create a queued snapshot row; the caller enqueues the build after commit."""
    if policy not in SnapshotPolicy.values:
        raise ValueError(f"Unknown policy {policy!r}; use {', '.join(SnapshotPolicy.values)}.")
    if not 0.0 <= min_agreement < 1.0:
        raise ValueError("min_agreement must be at least 0 and below 1.")
    return Snapshot.objects.create(
        project=project, policy=policy, min_agreement=min_agreement, created_by=created_by
    )


def _votes(project_id: int) -> Iterator[dict[str, Any]]:
    return (
        Vote.objects.filter(
            comparison__project_id=project_id,
            comparison__is_gold=False,
        )
        .order_by("comparison_id", "id")
        .values(*_VOTE_FIELDS)
        .iterator(chunk_size=_STREAM_CHUNK)
    )


def _comparison_groups(project_id: int) -> Iterator[list[dict[str, Any]]]:
    """The streamed votes, one list per comparison (they arrive ordered by comparison)."""
    group: list[dict[str, Any]] = []
    for vote in _votes(project_id):
        if group and group[0]["comparison_id"] != vote["comparison_id"]:
            yield group
            group = []
        group.append(vote)
    if group:
        yield group


def _project_has_chat(project_id: int) -> bool:
    return Vote.objects.filter(
        comparison__project_id=project_id,
        comparison__is_gold=False,
        comparison__prompt__messages__isnull=False,
    ).exists()


def _triple(vote: dict[str, Any], chat: bool) -> dict[str, Any]:
    a_is_chosen = vote["chosen_id"] == vote["comparison__completion_a_id"]
    winner, loser = ("a", "b") if a_is_chosen else ("b", "a")
    chosen = vote[f"comparison__completion_{winner}__text"]
    rejected = vote[f"comparison__completion_{loser}__text"]
    messages = vote["comparison__prompt__messages"]
    prompt: Any = messages if messages is not None else vote["comparison__prompt__text"]
    if chat:
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "comparison_id": vote["comparison_id"],
        "round": vote["comparison__round__number"],
        "vote_count": vote["comparison__vote_count"],
        "chosen_model": vote[f"comparison__completion_{winner}__model_name"],
        "rejected_model": vote[f"comparison__completion_{loser}__model_name"],
    }


def _every_vote_rows(project_id: int, chat: bool) -> Iterator[dict[str, Any]]:
    for group in _comparison_groups(project_id):
        yield from _every_vote_group(group, chat)


def _every_vote_group(group: list[dict[str, Any]], chat: bool) -> Iterator[dict[str, Any]]:
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


def _every_vote_lines(project_id: int, chat: bool) -> Iterator[bytes]:
    """_canonical_line() of each row _every_vote_rows() yields, byte for byte, but faster.

    The votes of one comparison share its prompt, texts and model names: they are JSON-encoded
    once per comparison, and each vote's line is joined from those pieces and its own fields.
    """
    for group in _comparison_groups(project_id):
        yield from _every_vote_group_lines(group, chat)


def _every_vote_group_lines(group: list[dict[str, Any]], chat: bool) -> Iterator[bytes]:
    decisive = [vote for vote in group if vote["choice"] in DECISIVE_CHOICES]
    if not decisive:
        return
    first = decisive[0]
    messages = first["comparison__prompt__messages"]
    prompt: Any = messages if messages is not None else first["comparison__prompt__text"]
    text_a: Any = first["comparison__completion_a__text"]
    text_b: Any = first["comparison__completion_b__text"]
    if chat:
        if messages is None:
            prompt = [{"role": "user", "content": prompt}]
        text_a = [{"role": "assistant", "content": text_a}]
        text_b = [{"role": "assistant", "content": text_b}]
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
                b"}\n",
            )
        )


def _majority_rows(project_id: int, chat: bool, min_agreement: float) -> Iterator[dict[str, Any]]:
    for group in _comparison_groups(project_id):
        yield from _majority_group(group, chat, min_agreement)


def _majority_group(
    group: list[dict[str, Any]], chat: bool, min_agreement: float
) -> Iterator[dict[str, Any]]:
    """One triple when decisive votes agree on a winner by more than min_agreement.

    Ties and both-bad votes count against agreement (they are votes that did not pick the
    winner), so a comparison most annotators called a tie yields nothing.
    """
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
    row.update(agreement=round(agreement, 6), vote_id=None, strength=None)
    yield row


def iter_snapshot_rows(snapshot: Snapshot) -> Iterator[dict[str, Any]]:
    chat = _project_has_chat(snapshot.project_id)
    if snapshot.policy == SnapshotPolicy.EVERY_VOTE:
        return _every_vote_rows(snapshot.project_id, chat)
    return _majority_rows(snapshot.project_id, chat, snapshot.min_agreement)


def iter_snapshot_lines(snapshot: Snapshot, chat: bool) -> Iterator[bytes]:
    """The data.jsonl lines, in order: _canonical_line() of each iter_snapshot_rows() row."""
    if snapshot.policy == SnapshotPolicy.EVERY_VOTE:
        return _every_vote_lines(snapshot.project_id, chat)
    rows = _majority_rows(snapshot.project_id, chat, snapshot.min_agreement)
    return (_canonical_line(row) for row in rows)


def _canonical_line(row: dict[str, Any]) -> bytes:
    ordered = {column: row.get(column) for column in COLUMNS}
    return (
        json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n"
    ).encode()


def _parquet_schema(chat: bool) -> Any:
    import pyarrow as pa

    text = pa.string()
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    turn = message if chat else text
    return pa.schema(
        [
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
        ]
    )


def _write_parquet(jsonl_path: Path, parquet_path: Path, chat: bool) -> str:
    """Convert the finished JSONL in batches; returns the Parquet file's SHA-256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(chat)
    # Fixed writer settings: the same rows always give the same bytes.
    with (
        pq.ParquetWriter(
            parquet_path, schema, compression="zstd", write_statistics=False
        ) as writer,
        jsonl_path.open("rb") as source,
    ):
        batch: list[dict[str, Any]] = []
        for line in source:
            batch.append(json.loads(line))
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


def _dataset_card(snapshot: Snapshot, rows: int, sha256: str, chat: bool) -> str:
    layout = "conversational (lists of chat messages)" if chat else "plain strings"
    policy = SnapshotPolicy(snapshot.policy).label
    return f"""# {snapshot.project.name}: preference snapshot {snapshot.pk}

Preference triples exported by PrefLab.

- rows: {rows}
- policy: {policy} (`{snapshot.policy}`, min agreement {snapshot.min_agreement})
- layout: {layout}
- data.jsonl SHA-256: `{sha256}`

Columns: `prompt`, `chosen`, `rejected` (readable as-is by `datasets.load_dataset("json", ...)`
and TRL's DPOTrainer), plus `comparison_id`, `round`, `vote_count`, `agreement`,
`chosen_model`, `rejected_model`, `vote_id`, `strength`.

Gold (quality-control) comparisons, ties and both-bad votes are not exported.
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
            chat = _project_has_chat(snapshot.project_id)
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
        parquet_sha256 = _write_parquet(jsonl_path, temp_dir / "data.parquet", chat)
        manifest = {
            "snapshot_id": snapshot.pk,
            "project": snapshot.project.name,
            "project_id": snapshot.project_id,
            "policy": snapshot.policy,
            "min_agreement": snapshot.min_agreement,
            "rows": rows,
            "layout": "conversational" if chat else "string",
            "columns": COLUMNS,
            "files": {
                "data.jsonl": {"sha256": sha256},
                "data.parquet": {"sha256": parquet_sha256},
            },
        }
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
    project: Project, policy: str, min_agreement: float = 0.5, created_by: Any = None
) -> Snapshot:
    """Queue a snapshot and send its build task once the row is committed."""
    with transaction.atomic():
        snapshot = request_snapshot(project, policy, min_agreement, created_by)
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
