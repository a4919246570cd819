"""The quality job: compute a project's (or one round's) quality figures and cache them.

A ``QualityReport`` row (labeling.models, a core Job) is queued, a worker runs it through the
shared job wrapper (``core.jobs.run_job``, task ``workers.tasks.compute_quality_report``), and
the quality page and ``GET /api/v1/projects/{id}/quality`` read the newest succeeded report.

Which votes: human votes (``Vote.source = human``) of the project, or of the round, every round
purpose included. Judge and imported votes are left out: the figures describe the people.

When a report is recomputed (docs/quality.md, "The quality page"):
- on request: the page's *Recompute* button (reviewers and admins);
- when a project admin saves the thresholds;
- when the figures are read (page or API) and the number of human votes in the scope differs
  from the cached report's, or there is no report yet; never while one is queued or running.

This module imports Django; the statistics core beside it (``labeling.quality``) does not.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Length
from django.utils import timezone

from core.jobs import JobKind, Recovery, enqueue, run_job
from labeling.models import (
    JobStatus,
    Project,
    QualityReport,
    Ranking,
    Round,
    Vote,
    VoteSource,
)

from .thresholds import Thresholds

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

QUALITY_JOB = "quality_report"
COMPUTE_QUALITY_TASK = "workers.tasks.compute_quality_report"
# Annotator pairs kept per section in the cached report (the most overlapping first): with
# 1,000 annotators there are ~150,000 pairs, too many to store and show; the total is kept.
MAX_PAIRS = 500
_CHUNK = 20_000

_VOTE_FIELDS = (
    "comparison_id",
    "annotator_id",
    "annotator__username",
    "choice",
    "left_side",
    "time_taken_ms",
    "len_a",
    "len_b",
    "comparison__completion_a__model_name",
    "comparison__completion_b__model_name",
    "comparison__round__number",
    "comparison__is_gold",
    "comparison__gold_choice",
)


def thresholds_for(project: Project) -> Thresholds:
    """The project's flag thresholds: ``Project.quality_settings`` over the documented defaults.

    Raises ``ValueError`` naming an unknown key or a bad value (the settings form prevents
    both; the Django admin does not)."""
    stored = project.quality_settings or {}
    if not isinstance(stored, dict):
        raise ValueError("quality_settings must be a JSON object of threshold names and values")
    known = {field.name for field in dataclasses.fields(Thresholds)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise ValueError(
            f"quality_settings has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return Thresholds(**stored)


def _scope(project_id: int, round_id: int | None) -> Q:
    condition = Q(
        comparison__project_id=project_id,
        source=VoteSource.HUMAN,
        annotator__isnull=False,
    )
    if round_id is not None:
        condition &= Q(comparison__round_id=round_id)
    return condition


def count_votes(project_id: int, round_id: int | None = None) -> int:
    """Human votes in the scope of a report: what the cache's freshness is judged by."""
    return Vote.objects.filter(_scope(project_id, round_id)).count()


def ranking_scope(project_id: int, round_id: int | None) -> Q:
    """The human rankings a report's Rankings section covers (labeling.quality.rankings)."""
    condition = Q(task__project_id=project_id, source=VoteSource.HUMAN, annotator__isnull=False)
    if round_id is not None:
        condition &= Q(task__round_id=round_id)
    return condition


def count_rankings(project_id: int, round_id: int | None = None) -> int:
    """Human rankings in the scope of a report; they judge the cache's freshness as votes do."""
    return Ranking.objects.filter(ranking_scope(project_id, round_id)).count()


@dataclass(frozen=True)
class VoteTable:
    """The votes as ``labeling.quality``'s table, and the usernames of the annotator ids."""

    frame: pd.DataFrame
    usernames: dict[int, str]


class _Codes:
    """Strings to small integer codes as they stream in (a dict lookup per value), so the
    table holds one int32 per vote and column instead of a Python string each."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def code(self, value: Any) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.index)
        return found

    def categorical(self, codes: Any) -> Any:
        import pandas as pd

        categories = list(self.index)
        return pd.Categorical.from_codes(codes, categories=categories)


def load_votes(project_id: int, round_id: int | None = None) -> VoteTable:
    """Read the scope's human votes into the statistics core's vote table, in id order.

    Lengths are computed by the database (``Length``), so response texts never leave it.
    Rows arrive in chunks and go straight into numpy arrays (strings as category codes):
    memory is about 60 bytes a vote, whatever the scope's size."""
    import numpy as np
    import pandas as pd

    from .votes import GOLD_CHOICES

    total = count_votes(project_id, round_id)
    ints = {name: np.empty(total, dtype=np.int64) for name in ("comparison", "annotator", "round")}
    floats = {name: np.empty(total, dtype=np.float64) for name in ("seconds", "len_a", "len_b")}
    text = {
        name: np.empty(total, dtype=np.int32) for name in ("choice", "left", "ma", "mb", "gold")
    }
    choices, sides, models, golds = _Codes(), _Codes(), _Codes(), _Codes()
    golds.code(None)  # code 0: not a gold item
    usernames: dict[int, str] = {}
    rows = (
        Vote.objects.filter(_scope(project_id, round_id))
        .annotate(
            len_a=Length("comparison__completion_a__text"),
            len_b=Length("comparison__completion_b__text"),
        )
        .order_by("id")
        .values_list(*_VOTE_FIELDS)
        .iterator(chunk_size=_CHUNK)
    )
    n = 0
    for row in rows:
        if n == total:  # a vote cast since the count: the next report will have it
            break
        (comparison, annotator, username, choice, left, ms, len_a, len_b, model_a, model_b,
         round_number, is_gold, gold_choice) = row  # fmt: skip
        ints["comparison"][n] = comparison
        ints["annotator"][n] = annotator
        ints["round"][n] = round_number
        floats["seconds"][n] = np.nan if ms is None else ms / 1000.0
        floats["len_a"][n] = len_a
        floats["len_b"][n] = len_b
        text["choice"][n] = choices.code(choice)
        text["left"][n] = sides.code(left)
        text["ma"][n] = models.code(model_a)
        text["mb"][n] = models.code(model_b)
        # A gold answer the statistics core cannot score (both bad) counts as no gold.
        text["gold"][n] = golds.code(
            gold_choice if is_gold and gold_choice in GOLD_CHOICES else None
        )
        usernames[annotator] = username
        n += 1
    frame = pd.DataFrame(
        {
            "comparison": ints["comparison"][:n],
            "annotator": ints["annotator"][:n],
            "choice": choices.categorical(text["choice"][:n]),
            "left_side": sides.categorical(text["left"][:n]),
            "seconds": floats["seconds"][:n],
            "len_a": floats["len_a"][:n],
            "len_b": floats["len_b"][:n],
            "model_a": models.categorical(text["ma"][:n]),
            "model_b": models.categorical(text["mb"][:n]),
            "round": ints["round"][:n],
            "gold": _gold_column(golds, text["gold"][:n]),
        }
    )
    return VoteTable(frame, usernames)


def _gold_column(golds: _Codes, codes: Any) -> Any:
    """The gold answers as an object column with None where there is none (the statistics
    core reads missing values as "not gold")."""
    import numpy as np

    values = np.array(list(golds.index), dtype=object)
    return values[codes]


def _trim_pairs(section: dict[str, Any]) -> dict[str, Any]:
    pairs = section.get("pairs", [])
    section["pairs_total"] = len(pairs)
    section["pairs"] = sorted(
        pairs, key=lambda p: (-p["overlap"], p["annotator_a"], p["annotator_b"])
    )[:MAX_PAIRS]
    return section


def report_data(table: VoteTable, thresholds: Thresholds) -> dict[str, Any]:
    """Every figure of the vote table as JSON-ready builtins, the way the cache stores them.

    The report's soft labels are left out (snapshots fit their own, on the votes they export)
    and annotator pairs are cut to the ``MAX_PAIRS`` most overlapping per section."""
    if table.frame.empty:
        return {"votes": 0, "thresholds": dataclasses.asdict(thresholds)}
    from .report import compute_quality

    report = compute_quality(table.frame, thresholds)
    data = report.to_dict()
    data.pop("soft_labels", None)
    data["project"] = _trim_pairs(data["project"])
    data["rounds"] = {key: _trim_pairs(section) for key, section in data["rounds"].items()}
    data["votes"] = len(table.frame)
    data["annotator_names"] = {str(k): v for k, v in sorted(table.usernames.items())}
    data["flagged"] = [row["annotator"] for row in data["annotators"] if row["flagged"]]
    return data


def _log(report_id: int, message: str) -> None:
    QualityReport.objects.filter(id=report_id).update(log_tail=message, heartbeat_at=timezone.now())


def _compute(claimed: QualityReport) -> None:
    report = QualityReport.objects.select_related("project").get(id=claimed.pk)
    _log(report.pk, "reading votes")
    table = load_votes(report.project_id, report.round_id)
    # Recorded before the figures, so a failed report says which votes it failed on.
    QualityReport.objects.filter(id=report.pk).update(vote_count=len(table.frame))
    thresholds = thresholds_for(report.project)
    _log(report.pk, f"computing figures over {len(table.frame):,} votes")
    data = report_data(table, thresholds)
    # The AI judges' agreement with these humans, per judge and round (docs/judges.md); read
    # from labeling rows (and the judging app's registered figures), cached with the rest.
    from labeling.quality.judges import judge_agreement

    data["judges"] = judge_agreement(report.project, report.round_id)
    # Agreement over the scope's human rankings of K responses (labeling.quality.rankings);
    # absent when it has none, so the page shows its Rankings section only where there are.
    from labeling.quality.rankings import ranking_figures

    rankings = ranking_figures(report.project_id, report.round_id)
    if rankings is not None:
        data["rankings"] = rankings
    QualityReport.objects.filter(
        id=report.pk, status=JobStatus.RUNNING, worker=claimed.worker
    ).update(data=data, vote_count=len(table.frame), log_tail="done")
    logger.info(
        "quality report %s of project %s: %s votes", report.pk, report.project_id, len(table.frame)
    )


def compute_quality_report(report_id: int) -> QualityReport | None:
    """Run a queued report through the job wrapper; None when it was not queued."""
    return run_job(QUALITY_JOB, report_id)  # type: ignore[return-value]


def active_report(project: Project, round_: Round | None = None) -> QualityReport | None:
    return (
        QualityReport.objects.filter(
            project=project,
            round=round_,
            status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
        )
        .order_by("-id")
        .first()
    )


def latest_report(project: Project, round_: Round | None = None) -> QualityReport | None:
    """The newest succeeded report of the scope: what the page and the API show."""
    return (
        QualityReport.objects.filter(project=project, round=round_, status=JobStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )


def failed_report(
    project: Project, round_: Round | None = None, after: QualityReport | None = None
) -> QualityReport | None:
    """The scope's newest report when it failed and is newer than ``after`` (the cached one)."""
    newest = (
        QualityReport.objects.filter(project=project, round=round_)
        .exclude(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .order_by("-id")
        .first()
    )
    if newest is None or newest.status != JobStatus.FAILED:
        return None
    if after is not None and newest.pk < after.pk:
        return None
    return newest


def request_quality_report(
    project: Project, round_: Round | None = None, created_by: Any = None
) -> QualityReport:
    """Queue a report of the scope and send its task after commit; a report already queued or
    running for the scope is returned instead of a second one."""
    if round_ is not None and round_.project_id != project.pk:
        raise ValueError(f"Round {round_.pk} is not a round of project {project.pk}.")
    with transaction.atomic():
        active = active_report(project, round_)
        if active is not None:
            return active
        report = QualityReport.objects.create(project=project, round=round_, created_by=created_by)
        enqueue(COMPUTE_QUALITY_TASK, report.pk)
    return report


@dataclass(frozen=True)
class CachedQuality:
    """What a reader of the figures gets: the cached report (or None), the job computing a new
    one (or None), and the scope's current human vote count."""

    report: QualityReport | None
    computing: QualityReport | None
    current_votes: int
    # The scope's newest report when it failed after the cached one was computed.
    failed: QualityReport | None = None
    # The scope's human rankings now (labeling.quality.rankings); the report's are in its data.
    current_rankings: int = 0

    @property
    def stale(self) -> bool:
        return self.report is not None and (
            self.report.vote_count != self.current_votes
            or reported_rankings(self.report) != self.current_rankings
        )


def reported_rankings(report: QualityReport) -> int:
    """How many human rankings a cached report's figures cover (0 before it had any)."""
    figures = (report.data or {}).get("rankings") or {}
    return int(figures.get("rankings", 0))


def get_quality(
    project: Project, round_: Round | None = None, *, refresh: bool = True
) -> CachedQuality:
    """The newest report of the scope; with ``refresh``, queue a new one when there is none or
    the human vote count changed since it was computed, and none is queued or running. A
    report that failed on the same vote count is not retried by itself (it would fail again):
    *Recompute* or new thresholds queue one."""
    report = latest_report(project, round_)
    current = count_votes(project.pk, round_.pk if round_ is not None else None)
    rankings = count_rankings(project.pk, round_.pk if round_ is not None else None)
    computing = active_report(project, round_)
    failed = failed_report(project, round_, after=report)
    # New rankings make the figures out of date as new votes do.
    outdated = (
        report is None or report.vote_count != current or reported_rankings(report) != rankings
    )
    failed_on_these = failed is not None and failed.vote_count == current
    if refresh and computing is None and outdated and not failed_on_these:
        computing = request_quality_report(project, round_)
    return CachedQuality(report, computing, current, failed, rankings)


def quality_job_kind() -> JobKind:
    """Registered by LabelingConfig.ready(): a lost computation is run again from scratch."""
    return JobKind(
        name=QUALITY_JOB,
        model=QualityReport,
        task_name=COMPUTE_QUALITY_TASK,
        execute=_compute,
        recovery=Recovery.RERUN,
        may_retry=lambda job: job.attempts < settings.PREFLAB_MAX_RUN_ATTEMPTS,
        lost_hint="Press Recompute on the quality page.",
    )
