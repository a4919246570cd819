"""Agreement over rankings of K responses: the "Rankings" section of the quality report.

Over the scope's human rankings (docs/quality.md, "Rankings"; docs/rankings.md):

* Kendall's W per ranking task with at least two human rankings, with the standard tie
  correction (Kendall & Babington Smith 1939; Siegel & Castellan 1988, 9.4)::

      W = 12 S / (m^2 (n^3 - n) - m sum_j T_j),   T_j = sum over rater j's tie groups (t^3 - t)

  ``S`` is the sum of squared deviations of the items' rank sums from their mean, ``m`` the
  raters, ``n`` the responses (K). Its significance: ``chi^2 = m (n - 1) W`` with ``n - 1``
  degrees of freedom (Friedman's statistic, tie-corrected alike). The section gives the mean W
  over tasks.
* Krippendorff's alpha at the ordinal level over all those tasks (the ``krippendorff``
  package): a unit is one response of one task (task x canonical position), the coders are the
  annotators and a coder's value is the response's average rank in their ranking (1 best; a tie
  group shares the mean of the ranks it spans, ``training.engine.rankings.average_ranks``).
  Tasks of different K share one value scale 1..8 (halves from ties).
* Per annotator, agreement with the leave-one-out consensus: on each task, Spearman's rho of the
  annotator's ranks against the mean ranks of the others; its mean over the annotator's tasks.
  Low or negative values mark the outliers.
* Position bias: among rankings with a single best response and a recorded display order, how
  often the response shown first was ranked best, against the 1/K of an unbiased annotator
  (Wilson interval, exact binomial test; one row per K).

No intervals for W and alpha: the pair figures beside them on the page (Krippendorff's alpha,
percent agreement) have none either; the per-task chi-square test says which tasks agree more
than chance.

The statistics take plain records and import no Django; :func:`ranking_figures` reads the
database (its imports are inside it, so the core stays importable without settings).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import krippendorff
import numpy as np
import numpy.typing as npt
from scipy import stats

from training.engine.rankings import RankingError, average_ranks, parse_ranking

from .stats import Proportion, proportion

logger = logging.getLogger(__name__)

# Tasks kept in the cached report, least agreed first: a project may have many thousands;
# the page shows the first few, the total is kept.
MAX_TASKS = 500
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class RankingRecord:
    """One human ranking as the statistics read it."""

    task: int
    annotator: int
    round: int
    size: int  # K
    ranking: Any  # the stored best-first JSON (nested lists are ties)
    display_order: Sequence[int]  # canonical positions top to bottom as shown; may be empty


@dataclass(frozen=True)
class KendallW:
    w: float | None  # None where undefined (every rater tied every response)
    chi_square: float | None
    dof: int
    p_value: float | None


def kendalls_w(ranks: npt.ArrayLike) -> KendallW:
    """Kendall's W of an ``(m raters, n items)`` matrix of average ranks, tie-corrected.

    The tie groups of each rater are read off equal ranks (average ranks of a ranking are exact
    halves in floating point, so equality is exact)."""
    matrix = np.asarray(ranks, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] < 2:
        raise ValueError(f"Kendall's W needs at least 2 raters of 2 items, got {matrix.shape}")
    m, n = matrix.shape
    totals = matrix.sum(axis=0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = 0
    for row in matrix:
        _, sizes = np.unique(row, return_counts=True)
        ties += int((sizes**3 - sizes).sum())
    denominator = m * m * (n**3 - n) - m * ties
    if denominator <= 0:
        return KendallW(None, None, n - 1, None)
    w = 12.0 * s / denominator
    chi_square = m * (n - 1) * w
    return KendallW(w, chi_square, n - 1, float(stats.chi2.sf(chi_square, n - 1)))


def leave_one_out_rho(ranks: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per rater of an ``(m, n)`` average-rank matrix: Spearman's rho of their ranks against the
    mean ranks of the other ``m - 1`` raters; NaN where either side is constant."""
    matrix = np.asarray(ranks, dtype=np.float64)
    m = matrix.shape[0]
    others = (matrix.sum(axis=0, keepdims=True) - matrix) / (m - 1)
    # Spearman is Pearson on ranks; the raters' values are ranks already, the means are not.
    x = stats.rankdata(matrix, axis=1)
    y = stats.rankdata(others, axis=1)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    spread = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (x * y).sum(axis=1) / spread
    return np.where(spread > 0, rho, np.nan)


def ordinal_alpha(units: Sequence[Sequence[float]]) -> float | None:
    """Krippendorff's alpha, ordinal level, of units given as the values their coders gave
    (missing coders left out); None where undefined (no unit with two values, or one value
    only). Built as a ``(units, values)`` count matrix, so memory grows with the units, not
    with units x coders."""
    pairable = [values for values in units if len(values) >= 2]
    if not pairable:
        return None
    domain = np.unique(np.concatenate([np.asarray(v, dtype=np.float64) for v in pairable]))
    if len(domain) < 2:
        return None
    counts = np.zeros((len(pairable), len(domain)), dtype=np.int64)
    for row, values in enumerate(pairable):
        columns = np.searchsorted(domain, np.asarray(values, dtype=np.float64))
        np.add.at(counts[row], columns, 1)
    return float(
        krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement="ordinal")
    )


@dataclass(frozen=True)
class PositionBiasRow:
    """For rankings of ``size`` responses: how often the response shown first was ranked best
    (``first_ranked_best.null`` is 1/K). ``tied_best`` rankings (a tie at the top) and those
    without a display order are left out and counted."""

    size: int
    first_ranked_best: Proportion
    tied_best: int
    no_display_order: int


@dataclass(frozen=True)
class TaskAgreement:
    task: int
    round: int
    size: int
    raters: int
    w: float | None
    chi_square: float | None
    dof: int
    p_value: float | None


@dataclass(frozen=True)
class AnnotatorAgreement:
    """``tasks``: this annotator's rankings on tasks with another human ranking; ``scored``: of
    those, the ones where rho is defined; ``mean_rho``/``min_rho`` over the scored."""

    annotator: int
    rankings: int
    tasks: int
    scored: int
    mean_rho: float | None
    min_rho: float | None


@dataclass(frozen=True)
class RankingSection:
    """The figures over one set of rankings: the scope's, or one round's."""

    rankings: int
    tasks: int
    agreement_tasks: int  # tasks with at least two human rankings: W and alpha read these
    mean_w: float | None
    median_w: float | None
    significant_tasks: int  # of the agreement tasks, those whose chi-square p < SIGNIFICANCE
    alpha: float | None
    alpha_units: int
    position_bias: list[PositionBiasRow]


@dataclass(frozen=True)
class RankingAgreement:
    project: RankingSection
    rounds: dict[int, RankingSection]
    tasks: list[TaskAgreement]  # every agreement task, least agreed (lowest W) first
    annotators: list[AnnotatorAgreement]  # lowest mean rho first
    invalid: int  # stored rankings that do not parse (left out; the submit path validates)


@dataclass(frozen=True)
class _Parsed:
    record: RankingRecord
    groups: tuple[tuple[int, ...], ...]
    ranks: npt.NDArray[np.float64]


def _parse(records: Iterable[RankingRecord]) -> tuple[list[_Parsed], int]:
    parsed: list[_Parsed] = []
    invalid = 0
    for record in records:
        try:
            groups = parse_ranking(record.ranking, record.size)
        except RankingError as exc:
            logger.warning(
                "ranking of task %s by annotator %s left out: %s",
                record.task,
                record.annotator,
                exc,
            )
            invalid += 1
            continue
        ranks = np.array([float(r) for r in average_ranks(groups, record.size)])
        parsed.append(_Parsed(record, groups, ranks))
    return parsed, invalid


def _by_task(parsed: Sequence[_Parsed]) -> dict[int, list[_Parsed]]:
    tasks: dict[int, list[_Parsed]] = defaultdict(list)
    for p in parsed:
        tasks[p.record.task].append(p)
    return tasks


def _task_agreement(task: int, rows: Sequence[_Parsed]) -> TaskAgreement:
    matrix = np.stack([row.ranks for row in rows])
    w = kendalls_w(matrix)
    first = rows[0].record
    return TaskAgreement(
        task, first.round, first.size, len(rows), w.w, w.chi_square, w.dof, w.p_value
    )


def _position_bias(parsed: Sequence[_Parsed]) -> list[PositionBiasRow]:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # hits, trials, tied, none
    for p in parsed:
        size = p.record.size
        row = counts[size]
        order = list(p.record.display_order or [])
        if sorted(order) != list(range(size)):
            row[3] += 1
        elif len(p.groups[0]) > 1:
            row[2] += 1
        else:
            row[1] += 1
            row[0] += int(p.groups[0][0] == order[0])
    return [
        PositionBiasRow(size, proportion(hits, trials, null=1.0 / size), tied, none)
        for size, (hits, trials, tied, none) in sorted(counts.items())
    ]


def _section(parsed: Sequence[_Parsed]) -> tuple[RankingSection, list[TaskAgreement]]:
    tasks = _by_task(parsed)
    agreements = [_task_agreement(t, rows) for t, rows in tasks.items() if len(rows) >= 2]
    ws = np.array([a.w for a in agreements if a.w is not None], dtype=np.float64)
    units = [
        [float(row.ranks[position]) for row in rows]
        for rows in tasks.values()
        if len(rows) >= 2
        for position in range(rows[0].record.size)
    ]
    section = RankingSection(
        rankings=len(parsed),
        tasks=len(tasks),
        agreement_tasks=len(agreements),
        mean_w=float(ws.mean()) if len(ws) else None,
        median_w=float(np.median(ws)) if len(ws) else None,
        significant_tasks=sum(
            1 for a in agreements if a.p_value is not None and a.p_value < SIGNIFICANCE
        ),
        alpha=ordinal_alpha(units),
        alpha_units=len(units),
        position_bias=_position_bias(parsed),
    )
    return section, agreements


def _annotators(parsed: Sequence[_Parsed]) -> list[AnnotatorAgreement]:
    own: dict[int, int] = defaultdict(int)
    rhos: dict[int, list[float]] = defaultdict(list)
    shared: dict[int, int] = defaultdict(int)
    for p in parsed:
        own[p.record.annotator] += 1
    for rows in _by_task(parsed).values():
        if len(rows) < 2:
            continue
        rho = leave_one_out_rho(np.stack([row.ranks for row in rows]))
        for row, value in zip(rows, rho.tolist(), strict=True):
            shared[row.record.annotator] += 1
            if not np.isnan(value):
                rhos[row.record.annotator].append(value)
    table = [
        AnnotatorAgreement(
            annotator=annotator,
            rankings=count,
            tasks=shared[annotator],
            scored=len(rhos[annotator]),
            mean_rho=float(np.mean(rhos[annotator])) if rhos[annotator] else None,
            min_rho=float(np.min(rhos[annotator])) if rhos[annotator] else None,
        )
        for annotator, count in own.items()
    ]
    # Outliers first: the lowest agreement with the others; unscored annotators last.
    return sorted(
        table,
        key=lambda a: (
            a.mean_rho is None,
            a.mean_rho if a.mean_rho is not None else 0.0,
            a.annotator,
        ),
    )


def ranking_agreement(records: Iterable[RankingRecord]) -> RankingAgreement:
    """Every ranking figure over ``records`` (one per annotator and task), for the scope and for
    each of its rounds."""
    parsed, invalid = _parse(records)
    project, agreements = _section(parsed)
    rounds = {
        number: _section([p for p in parsed if p.record.round == number])[0]
        for number in sorted({p.record.round for p in parsed})
    }
    agreements.sort(key=lambda a: (a.w is None, a.w if a.w is not None else 0.0, a.task))
    return RankingAgreement(project, rounds, agreements, _annotators(parsed), invalid)


# ----------------------------------------------------------------------------------------------
# the report's JSON and the database


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def agreement_dict(
    figures: RankingAgreement, usernames: dict[int, str], rankings: int
) -> dict[str, Any]:
    """The figures as the cached report stores them (``data["rankings"]``); ``rankings`` is the
    scope's human ranking count, which the cache's freshness check compares."""
    return _clean(
        {
            "rankings": rankings,
            "project": dataclasses.asdict(figures.project),
            "rounds": {r: dataclasses.asdict(s) for r, s in figures.rounds.items()},
            "tasks": [dataclasses.asdict(t) for t in figures.tasks[:MAX_TASKS]],
            "tasks_total": len(figures.tasks),
            "annotators": [dataclasses.asdict(a) for a in figures.annotators],
            "annotator_names": {str(k): v for k, v in sorted(usernames.items())},
            "invalid": figures.invalid,
        }
    )


def ranking_figures(project_id: int, round_id: int | None = None) -> dict[str, Any] | None:
    """The scope's ranking figures as the cached report stores them; None without rankings."""
    from labeling.models import Ranking

    from .jobs import ranking_scope

    rows = (
        Ranking.objects.filter(ranking_scope(project_id, round_id))
        .order_by("id")
        .values_list(
            "task_id",
            "annotator_id",
            "annotator__username",
            "task__round__number",
            "task__size",
            "ranking",
            "display_order",
        )
    )
    records: list[RankingRecord] = []
    usernames: dict[int, str] = {}
    for task, annotator, username, round_number, size, ranking, order in rows.iterator(
        chunk_size=5000
    ):
        records.append(RankingRecord(task, annotator, round_number, size, ranking, order or []))
        usernames[annotator] = username
    if not records:
        return None
    return agreement_dict(ranking_agreement(records), usernames, len(records))


# Rows of the least-agreed task table shown on the page (the cached report keeps MAX_TASKS).
PAGE_TASKS = 50


def page_context(figures: dict[str, Any], round_number: int | None) -> dict[str, Any]:
    """The quality page's Rankings section from the cached ``data["rankings"]``: the scope and
    round rows, the least agreed tasks and the annotators with their names."""
    names = figures.get("annotator_names", {})
    if round_number is not None:  # a round's own report: its scope is the round
        sections = [{"label": f"Round {round_number}", **figures["project"]}]
    else:
        sections = [{"label": "All rounds", **figures["project"]}]
        for number, section in sorted(figures["rounds"].items(), key=lambda item: int(item[0])):
            sections.append({"label": f"Round {number}", **section})
    return {
        "sections": sections,
        "position_bias": figures["project"]["position_bias"],
        "tasks": figures["tasks"][:PAGE_TASKS],
        "tasks_total": figures.get("tasks_total", 0),
        "annotators": [
            {**a, "name": names.get(str(a["annotator"]), f"user {a['annotator']}")}
            for a in figures["annotators"]
        ],
        "invalid": figures.get("invalid", 0),
        "significance": SIGNIFICANCE,
    }
