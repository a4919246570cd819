"""Request and response bodies of the export API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema


class ProjectOut(Schema):
    id: int
    name: str
    role: str = Field(description="Your role in the project: annotator, reviewer or admin.")
    overlap: int
    base_model: str
    created_at: datetime


class ProjectPage(Schema):
    items: list[ProjectOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class SnapshotFiles(Schema):
    jsonl: str
    parquet: str


class SnapshotOut(Schema):
    id: int
    project_id: int
    status: Literal["queued", "running", "ready", "failed"]
    policy: str
    pair_conversion: Literal["all", "best_worst", "adjacent"] | None = Field(
        None, description="ranking_pairs: which pairs each ranking yielded; null otherwise."
    )
    min_agreement: float
    row_count: int | None
    sha256: str | None = Field(description="SHA-256 of data.jsonl (its ETag); null until ready.")
    parquet_sha256: str | None
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str
    files: SnapshotFiles | None = Field(description="Download URLs; null until ready.")
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="What the export left out (docs/api.md, Snapshots): rounds, sources, "
        "exclude_flagged, adjudicated_only, and counts of excluded annotators.",
    )


class SnapshotPage(Schema):
    items: list[SnapshotOut]
    next_cursor: str | None


class SnapshotFilters(Schema):
    rounds: list[int] = Field(
        default_factory=list, description="Round numbers to export; empty: every training round."
    )
    sources: list[Literal["human", "judge", "imported"]] = Field(
        default_factory=list, description="Vote sources to export; empty: all."
    )
    exclude_flagged: bool = Field(
        False, description="Leave out the annotators the newest quality report flags."
    )
    adjudicated_only: bool = Field(False, description="Only comparisons a reviewer decided.")
    exclude_judges: list[int | str] = Field(
        default_factory=list, description="AI judges (ids or names) whose votes are left out."
    )
    humans_win: bool = Field(
        False, description="Drop judges' votes on comparisons that have a human or imported vote."
    )


class SnapshotCreate(Schema):
    policy: Literal[
        "every_vote",
        "majority",
        "reliability_weighted",
        "raw_votes",
        "rankings",
        "ranking_consensus",
        "ranking_pairs",
    ] = Field(
        "majority",
        description="Vote policies export comparisons; rankings, ranking_consensus and "
        "ranking_pairs export ranking tasks (docs/rankings.md).",
    )
    pair_conversion: Literal["all", "best_worst", "adjacent"] | None = Field(
        None,
        description="Required by ranking_pairs, refused by every other policy: every implied "
        "pair, best versus worst, or adjacent positions.",
    )
    min_agreement: float = Field(
        0.5, ge=0.0, lt=1.0, description="Majority policy: the winner's share must exceed this."
    )
    filters: SnapshotFilters | None = None


class SnapshotAccepted(Schema):
    status: str = Field(description="The job's state: queued, running, ready or failed.")
    poll_url: str
    snapshot: SnapshotOut


class ImportOut(Schema):
    kind: str
    prompts: int
    comparisons: int
    votes: int
    round: int | None
    skipped_duplicates: list[int] = Field(
        description="Line numbers of the exact duplicate rows left out (on_duplicate=skip)."
    )
    ranking_tasks: int = Field(description="Ranking tasks created (kinds rankings and ranked).")
    rankings: int = Field(description="Imported rankings created (kind ranked).")


class CheckpointOut(Schema):
    id: int
    project_id: int
    run_id: int | None
    name: str
    path: str
    step: int | None
    is_final: bool
    metrics: dict[str, Any]
    created_at: datetime


class CheckpointPage(Schema):
    items: list[CheckpointOut]
    next_cursor: str | None


class RunOut(Schema):
    id: int
    project_id: int
    snapshot_id: int
    start_checkpoint_id: int
    reference_checkpoint_id: int | None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    step: int
    total_steps: int | None
    progress_percent: int
    eta_seconds: float | None
    config: dict[str, Any]
    latest_metrics: dict[str, Any]
    summary: dict[str, Any]
    error: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    url: str


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None


class RunCreate(Schema):
    snapshot_id: int
    start_checkpoint_id: int
    reference_checkpoint_id: int | None = None
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="DPO engine settings, e.g. beta, learning_rate."
    )


class RunAccepted(Schema):
    status: str
    poll_url: str
    run: RunOut


class PreferenceRow(Schema):
    """One line of the preferences stream (application/x-ndjson)."""

    prompt: str | list[dict[str, str]]
    chosen: str | list[dict[str, str]]
    rejected: str | list[dict[str, str]]
    vote_id: int
    comparison_id: int
    round: int
    annotator: str | None
    imported_from: str
    strength: str | None
    agreement: float
    chosen_model: str
    rejected_model: str
    created_at: datetime
    source: str  # human, judge or imported
    judge: str | None  # the AI judge's name when source is judge
