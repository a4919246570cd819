"""How well each AI judge agrees with humans, per round: the judges' section of the quality
report (docs/judges.md).

For each enabled judge of the project, overall and per round:
- agreement with the human majority: among comparisons the judge decided (A or B) and whose
  human decisive votes have a strict majority, the share where the judge picked the same
  side, with a 95% Wilson interval;
- agreement with gold: among gold comparisons with an A/B gold answer that the judge decided;
- length bias: among its decisive votes on pairs of unequal length, the share choosing the
  longer response (0.5: none), with the humans' share on the same comparisons beside it;
- position consistency, position bias and cost: these need every verdict, also those that
  made no vote (inconsistent, unparseable), which the judging app keeps. labeling never
  imports judging: judging registers a provider here (register_order_stats) at start-up and
  its figures are merged in; without one those keys are absent.

Only labeling rows are read here: votes with source "judge" and source "human".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from django.db.models.functions import Length

from labeling.models import DECISIVE_CHOICES, Choice, Judge, Project, Vote, VoteSource
from labeling.quality.stats import proportion

# (project, round_id or None) -> {judge_id: {round_id or None: {figure: value}}}
OrderStats = Callable[[Project, int | None], dict[int, dict[int | None, dict[str, Any]]]]
_PROVIDERS: list[OrderStats] = []


def register_order_stats(provider: OrderStats) -> None:
    """judging.apps registers the position consistency / bias / cost figures it computes."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def _share(successes: int, trials: int) -> dict[str, Any]:
    figure = asdict(proportion(successes, trials))
    figure.pop("null", None)
    return figure


def _human_majorities(comparison_ids: set[int]) -> dict[int, str]:
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    rows = Vote.objects.filter(
        comparison_id__in=comparison_ids, source=VoteSource.HUMAN, choice__in=DECISIVE_CHOICES
    ).values_list("comparison_id", "choice")
    for comparison_id, choice in rows.iterator(chunk_size=5000):
        counts[comparison_id][choice] += 1
    majorities = {}
    for comparison_id, counter in counts.items():
        ranked = counter.most_common()
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            majorities[comparison_id] = ranked[0][0]
    return majorities


def judge_agreement(project: Project, round_id: int | None = None) -> list[dict[str, Any]]:
    """One dict per (judge, round), plus one per judge with round None for all its rounds."""
    judges = list(Judge.objects.filter(project=project).order_by("name"))
    if not judges:
        return []
    votes = Vote.objects.filter(
        comparison__project=project, source=VoteSource.JUDGE, judge__isnull=False
    )
    if round_id is not None:
        votes = votes.filter(comparison__round_id=round_id)
    rows = list(
        votes.annotate(
            length_a=Length("comparison__completion_a__text"),
            length_b=Length("comparison__completion_b__text"),
        ).values_list(
            "judge_id",
            "comparison_id",
            "comparison__round_id",
            "comparison__round__number",
            "choice",
            "comparison__is_gold",
            "comparison__gold_choice",
            "length_a",
            "length_b",
        )
    )
    majorities = _human_majorities({row[1] for row in rows})
    # counters[(judge, round)][name] = [successes, trials]
    counters: dict[tuple[int, int | None], dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    numbers: dict[int | None, int | None] = {None: None}
    for judge_id, comparison_id, rid, number, choice, gold, gold_choice, len_a, len_b in rows:
        numbers[rid] = number
        for key in ((judge_id, rid), (judge_id, None)):
            c = counters[key]
            c["votes"][1] += 1
            if choice not in DECISIVE_CHOICES:
                continue
            human = majorities.get(comparison_id)
            if human is not None:
                c["human"][0] += choice == human
                c["human"][1] += 1
            if gold and gold_choice in DECISIVE_CHOICES:
                c["gold"][0] += choice == gold_choice
                c["gold"][1] += 1
            if len_a != len_b:
                longer = Choice.A if len_a > len_b else Choice.B
                c["longer"][0] += choice == longer
                c["longer"][1] += 1
                if human is not None:
                    c["human_longer"][0] += human == longer
                    c["human_longer"][1] += 1
    extra: dict[int, dict[int | None, dict[str, Any]]] = defaultdict(dict)
    for provider in _PROVIDERS:
        for judge_id, by_round in provider(project, round_id).items():
            for of_round, figures in by_round.items():
                extra[judge_id].setdefault(of_round, {}).update(figures)
                if of_round is not None and of_round not in numbers:
                    numbers[of_round] = figures.get("round_number")
    rounds_of: dict[int, set[int | None]] = defaultdict(lambda: {None})
    for judge_id, counted_round in counters:
        rounds_of[judge_id].add(counted_round)
    for judge_id, by_round in extra.items():
        rounds_of[judge_id].update(by_round)
    report = []
    for judge in judges:
        for of_round in sorted(
            rounds_of[judge.pk], key=lambda r: (r is not None, numbers.get(r) or 0)
        ):
            c = counters.get((judge.pk, of_round), defaultdict(lambda: [0, 0]))
            entry: dict[str, Any] = {
                "judge_id": judge.pk,
                "judge": judge.name,
                "kind": judge.kind,
                "version": judge.version,
                "enabled": judge.enabled,
                "round_id": of_round,
                "round": numbers.get(of_round),
                "votes": c["votes"][1],
                "agreement_with_humans": _share(*c["human"]),
                "agreement_with_gold": _share(*c["gold"]),
                "length_bias": _share(*c["longer"]),
                "humans_length_bias": _share(*c["human_longer"]),
            }
            entry.update(extra.get(judge.pk, {}).get(of_round, {}))
            entry.pop("round_number", None)
            report.append(entry)
    return report
