"""The judges' figures only judging's rows can give: position consistency, position bias and
cost, per judge and round, from every JudgeResult (also the verdicts that made no vote).
Registered into labeling.quality.judges at start-up (judging.apps)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from django.db.models import F

from judging.models import JudgeResult, Outcome
from labeling.models import Choice, Project
from labeling.quality.stats import proportion


def _share(successes: int, trials: int) -> dict[str, Any]:
    figure = asdict(proportion(successes, trials))
    figure.pop("null", None)
    return figure


def order_stats(
    project: Project, round_id: int | None
) -> dict[int, dict[int | None, dict[str, Any]]]:
    """{judge id: {round id, or None for all rounds: figures}} at each judge's current version.

    position_consistency: consistent / (consistent + inconsistent), both orders parsed;
    position_bias: among every decisive single-order answer, the share naming the response
    shown first (A in the A/B order, B in the B/A order); 0.5 is none.
    """
    results = JudgeResult.objects.filter(judge__project=project, judge_version=F("judge__version"))
    if round_id is not None:
        results = results.filter(comparison__round_id=round_id)
    rows = results.values_list(
        "judge_id",
        "comparison__round_id",
        "comparison__round__number",
        "outcome",
        "choice_ab",
        "choice_ba",
        "calls",
        "tokens",
        "seconds",
    )
    totals: dict[tuple[int, int | None], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    numbers: dict[int | None, int] = {}
    for judge_id, rid, number, outcome, ab, ba, calls, tokens, seconds in rows.iterator(
        chunk_size=5000
    ):
        numbers[rid] = number
        for key in ((judge_id, rid), (judge_id, None)):
            t = totals[key]
            t["results"] += 1
            t[outcome] += 1
            t["calls"] += calls
            t["tokens"] += tokens
            t["seconds"] += seconds
            for choice, first in ((ab, Choice.A), (ba, Choice.B)):
                if choice in (Choice.A, Choice.B):
                    t["decisive_answers"] += 1
                    t["first_picks"] += choice == first
    figures: dict[int, dict[int | None, dict[str, Any]]] = defaultdict(dict)
    for (judge_id, of_round), t in totals.items():
        both_parsed = int(t[Outcome.CONSISTENT] + t[Outcome.INCONSISTENT])
        figures[judge_id][of_round] = {
            "round_number": numbers.get(of_round) if of_round is not None else None,
            "results": int(t["results"]),
            "consistent": int(t[Outcome.CONSISTENT]),
            "inconsistent": int(t[Outcome.INCONSISTENT]),
            "unparseable": int(t[Outcome.UNPARSEABLE]),
            "errors": int(t[Outcome.ERROR]),
            "position_consistency": _share(int(t[Outcome.CONSISTENT]), both_parsed),
            "position_bias": _share(int(t["first_picks"]), int(t["decisive_answers"])),
            "cost": {
                "calls": int(t["calls"]),
                "tokens": int(t["tokens"]),
                "seconds": round(t["seconds"], 3),
            },
        }
    return figures
