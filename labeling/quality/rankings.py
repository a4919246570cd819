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
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


def kendalls_w_batch(
    ranks: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """W, chi-square and p of a ``(tasks, m raters, n items)`` stack of average ranks, one task
    at a time but computed for all at once; NaN where W is undefined.

    A rater's tie term ``sum (t^3 - t)`` over its tie groups equals ``sum_i (c_i^2 - 1)`` over
    its items, ``c_i`` the number of items sharing item i's rank (a group of t items adds
    ``t (t^2 - 1)``); average ranks of a ranking are exact halves in floating point, so the
    equality test is exact."""
    stack = np.asarray(ranks, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1] < 2 or stack.shape[2] < 2:
        raise ValueError(f"Kendall's W needs at least 2 raters of 2 items, got {stack.shape}")
    m, n = stack.shape[1], stack.shape[2]
    totals = stack.sum(axis=1)  # (tasks, n)
    s = ((totals - totals.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    shared = (stack[..., :, None] == stack[..., None, :]).sum(axis=-1)  # c_i: (tasks, m, n)
    ties = (shared**2 - 1).sum(axis=(1, 2))
    denominator = m * m * (n**3 - n) - m * ties
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(denominator > 0, 12.0 * s / denominator, np.nan)
    chi_square = m * (n - 1) * w
    p_value = np.where(np.isnan(chi_square), np.nan, stats.chi2.sf(chi_square, n - 1))
    return w, chi_square, p_value


def kendalls_w(ranks: npt.ArrayLike) -> KendallW:
    """Kendall's W of an ``(m raters, n items)`` matrix of average ranks, tie-corrected."""
    matrix = np.asarray(ranks, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"Kendall's W needs an (m raters, n items) matrix, got {matrix.shape}")
    w, chi_square, p_value = kendalls_w_batch(matrix[None])
    dof = matrix.shape[1] - 1
    if np.isnan(w[0]):
        return KendallW(None, None, dof, None)
    return KendallW(float(w[0]), float(chi_square[0]), dof, float(p_value[0]))


def leave_one_out_rho(ranks: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per rater of an ``(m, n)`` rank matrix (or a ``(tasks, m, n)`` stack): Spearman's rho of
    their ranks against the mean ranks of the other ``m - 1`` raters of the same task; NaN
    where either side is constant."""
    stack = np.asarray(ranks, dtype=np.float64)
    m = stack.shape[-2]
    others = (stack.sum(axis=-2, keepdims=True) - stack) / (m - 1)
    # Spearman is Pearson on ranks (ties averaged), taken along the items.
    x = stats.rankdata(stack, axis=-1)
    y = stats.rankdata(others, axis=-1)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    spread = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (x * y).sum(axis=-1) / spread
    return np.where(spread > 0, rho, np.nan)


def ordinal_alpha(stacks: Sequence[npt.NDArray[np.float64]]) -> float | None:
    """Krippendorff's alpha, ordinal level, over ``(tasks, m coders, n items)`` stacks of
    average ranks: every item of every task is a unit, its m values its coders' ranks. None
    where undefined (no unit, or a single value in all). Passed to the package as a
    ``(units, values)`` count matrix, so memory grows with the units, not units x coders."""
    # Imported here: the quality page reads page_context from this module, and krippendorff
    # loads only where a report is computed (as for the pair figures).
    import krippendorff

    stacks = [stack for stack in stacks if stack.size]
    if not stacks:
        return None
    domain = np.unique(np.concatenate([stack.ravel() for stack in stacks]))
    if len(domain) < 2:
        return None
    blocks = []
    for stack in stacks:
        tasks, _, n = stack.shape
        counts = np.zeros((tasks * n, len(domain)), dtype=np.int64)
        units = np.broadcast_to(np.arange(tasks * n).reshape(tasks, 1, n), stack.shape)
        np.add.at(counts, (units.ravel(), np.searchsorted(domain, stack).ravel()), 1)
        blocks.append(counts)
    return float(
        krippendorff.alpha(
            value_counts=np.concatenate(blocks),
            value_domain=domain,
            level_of_measurement="ordinal",
        )
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


@dataclass(frozen=True)
class _Stack:
    """The tasks of one shape, m rankings (m >= 2) of n responses, stacked for numpy."""

    tasks: list[int]
    rounds: list[int]
    annotators: npt.NDArray[np.int64]  # (tasks, m)
    ranks: npt.NDArray[np.float64]  # (tasks, m, n) average ranks


def _stacks(parsed: Sequence[_Parsed]) -> list[_Stack]:
    """The tasks with at least two rankings, grouped by shape: every figure is then computed
    for all tasks of a shape at once instead of a task at a time."""
    shapes: dict[tuple[int, int], list[list[_Parsed]]] = defaultdict(list)
    for rows in _by_task(parsed).values():
        if len(rows) >= 2:
            shapes[(len(rows), rows[0].record.size)].append(rows)
    return [
        _Stack(
            tasks=[rows[0].record.task for rows in groups],
            rounds=[rows[0].record.round for rows in groups],
            annotators=np.array([[row.record.annotator for row in rows] for rows in groups]),
            ranks=np.stack([np.stack([row.ranks for row in rows]) for rows in groups]),
        )
        for _, groups in sorted(shapes.items())
    ]


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _task_agreements(stacks: Sequence[_Stack]) -> list[TaskAgreement]:
    agreements: list[TaskAgreement] = []
    for stack in stacks:
        _, m, n = stack.ranks.shape
        w, chi_square, p_value = (a.tolist() for a in kendalls_w_batch(stack.ranks))
        agreements.extend(
            TaskAgreement(
                task,
                round_,
                n,
                m,
                _number(w[i]),
                _number(chi_square[i]),
                n - 1,
                _number(p_value[i]),
            )
            for i, (task, round_) in enumerate(zip(stack.tasks, stack.rounds, strict=True))
        )
    return agreements


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
    stacks = _stacks(parsed)
    agreements = _task_agreements(stacks)
    ws = np.array([a.w for a in agreements if a.w is not None], dtype=np.float64)
    section = RankingSection(
        rankings=len(parsed),
        tasks=len({p.record.task for p in parsed}),
        agreement_tasks=len(agreements),
        mean_w=float(ws.mean()) if len(ws) else None,
        median_w=float(np.median(ws)) if len(ws) else None,
        significant_tasks=sum(
            1 for a in agreements if a.p_value is not None and a.p_value < SIGNIFICANCE
        ),
        alpha=ordinal_alpha([stack.ranks for stack in stacks]),
        alpha_units=sum(stack.ranks.shape[0] * stack.ranks.shape[2] for stack in stacks),
        position_bias=_position_bias(parsed),
    )
    return section, agreements


def _annotators(parsed: Sequence[_Parsed]) -> list[AnnotatorAgreement]:
    ids, own = np.unique(np.array([p.record.annotator for p in parsed]), return_counts=True)
    stacks = _stacks(parsed)
    who = np.concatenate([s.annotators.ravel() for s in stacks] + [np.empty(0, np.int64)])
    rho = np.concatenate([leave_one_out_rho(s.ranks).ravel() for s in stacks] + [np.empty(0)])
    index = np.searchsorted(ids, who)
    scored = ~np.isnan(rho)
    tasks = np.bincount(index, minlength=len(ids))
    count = np.bincount(index[scored], minlength=len(ids))
    total = np.bincount(index[scored], weights=rho[scored], minlength=len(ids))
    lowest = np.full(len(ids), np.inf)
    np.minimum.at(lowest, index[scored], rho[scored])
    table = [
        AnnotatorAgreement(
            annotator=int(ids[i]),
            rankings=int(own[i]),
            tasks=int(tasks[i]),
            scored=int(count[i]),
            mean_rho=float(total[i] / count[i]) if count[i] else None,
            min_rho=float(lowest[i]) if count[i] else None,
        )
        for i in range(len(ids))
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
