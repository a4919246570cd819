"""Routing: which comparisons humans should see first, from what the judges concluded.

For each comparison, over the enabled judges' results at their current version:
- priority 3: some judge was inconsistent (the two orders disagreed) or unparseable;
- priority 2: judges that were consistent disagree with each other;
- priority 1: a consistent verdict with a small margin (below the project's
  quality_settings["judge_small_margin"], default 0.2; only judges that score have margins);
- priority 0: no doubt (or no judge).
A comparison is judge-decided when at least one judge decided it (A or B) consistently and its
priority is 0. The lease query (labeling.services) serves higher priorities first, and leaves
judge-decided comparisons out when the project's judged_to_humans is off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import F

from labeling.models import Choice, Comparison

DEFAULT_SMALL_MARGIN = 0.2
INCONSISTENT, DISAGREE, SMALL_MARGIN, NO_DOUBT = 3, 2, 1, 0


def small_margin_of(quality_settings: dict[str, object] | None) -> float:
    value = (quality_settings or {}).get("judge_small_margin", DEFAULT_SMALL_MARGIN)
    return float(value) if isinstance(value, (int, float)) else DEFAULT_SMALL_MARGIN


def priority_of(
    results: list[tuple[str, str, float | None]], small_margin: float
) -> tuple[int, bool]:
    """(priority, decided) from (outcome, choice, margin) of each judge."""
    if not results:
        return NO_DOUBT, False
    if any(outcome in ("inconsistent", "unparseable") for outcome, _, _ in results):
        return INCONSISTENT, False
    choices = {choice for outcome, choice, _ in results if outcome == "consistent"}
    if len(choices) > 1:
        return DISAGREE, False
    if any(
        outcome == "consistent" and margin is not None and margin < small_margin
        for outcome, _, margin in results
    ):
        return SMALL_MARGIN, False
    decided = bool(choices) and choices <= {Choice.A, Choice.B}
    return NO_DOUBT, decided


def update_routing(comparison_ids: Iterable[int]) -> None:
    """Recompute judge_priority and judge_decided of these comparisons."""
    from judging.models import JudgeResult

    ids = list(comparison_ids)
    if not ids:
        return
    rows = (
        JudgeResult.objects.filter(
            comparison_id__in=ids, judge__enabled=True, judge_version=F("judge__version")
        )
        .values_list("comparison_id", "outcome", "choice", "margin")
        .order_by()
    )
    results: dict[int, list[tuple[str, str, float | None]]] = defaultdict(list)
    for comparison_id, outcome, choice, margin in rows:
        results[comparison_id].append((outcome, choice, margin))
    margins = dict(
        Comparison.objects.filter(id__in=ids).values_list("id", "project__quality_settings")
    )
    groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
    for comparison_id in ids:
        groups[
            priority_of(results.get(comparison_id, []), small_margin_of(margins.get(comparison_id)))
        ].append(comparison_id)
    for (priority, decided), members in groups.items():
        Comparison.objects.filter(id__in=members).exclude(
            judge_priority=priority, judge_decided=decided
        ).update(judge_priority=priority, judge_decided=decided)
