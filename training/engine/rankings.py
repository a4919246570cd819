"""Rankings of K responses as pure data: parsing, conversion to pairs, Borda consensus.

Plain Python only (no torch, no Django), so the engine's listwise loader and, later, the Django
side (snapshot export of ranking tasks) share one definition. docs/engine.md, "Rankings and the
Plackett-Luce loss", describes the format and the policies.

A ranking of responses ``0..K-1`` is written best first; a nested list is a tie group::

    [2, [0, 3], 1]     # 2 is best, 0 and 3 are tied second, 1 is last

:func:`parse_ranking` turns it into *groups* (a tuple of tuples of indices, best group first:
``((2,), (0, 3), (1,))``). A group's *position* is its 0-based index in that tuple.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

MIN_RESPONSES = 2  # 2 makes a ranking a pair (the Plackett-Luce loss is then DPO's)
MAX_RESPONSES = 8

Groups = tuple[tuple[int, ...], ...]
PairPolicy = Literal["all", "best_worst", "adjacent"]
PAIR_POLICIES: dict[str, str] = {
    "all": "every pair of responses in different groups, the better one chosen",
    "best_worst": "every response of the best group against every response of the worst group",
    "adjacent": "every response of a group against every response of the next group",
}


class RankingError(ValueError):
    """A ranking is malformed; the message says what is wrong (the caller adds where)."""


def parse_ranking(value: Any, k: int) -> Groups:
    """Validate a best-first ranking of ``k`` responses (nested lists are ties) into groups.

    It must name every index ``0..k-1`` exactly once, at most one level deep, and must not tie
    all ``k`` responses (such a ranking says nothing about their order).
    """
    if not isinstance(value, list) or not value:
        raise RankingError(
            f"'ranking' must be a non-empty list of response indices, got {_kind(value)}"
        )
    groups: list[tuple[int, ...]] = []
    for item in value:
        members = item if isinstance(item, list) else [item]
        if not members:
            raise RankingError("'ranking' holds an empty tie group []")
        for m in members:
            if isinstance(m, list):
                raise RankingError("'ranking' nests lists more than one level deep")
            if isinstance(m, bool) or not isinstance(m, int):
                raise RankingError(f"'ranking' entries must be integers, got {_kind(m)}")
            if not 0 <= m < k:
                raise RankingError(
                    f"'ranking' is not a permutation of 0..{k - 1}: index {m} is out of range"
                )
        groups.append(tuple(members))
    seen: set[int] = set()
    for group in groups:
        for m in group:
            if m in seen:
                raise RankingError(
                    f"'ranking' is not a permutation of 0..{k - 1}: index {m} appears twice"
                )
            seen.add(m)
    missing = sorted(set(range(k)) - seen)
    if missing:
        raise RankingError(
            f"'ranking' is not a permutation of 0..{k - 1}: index "
            f"{', '.join(map(str, missing))} {'is' if len(missing) == 1 else 'are'} missing"
        )
    if len(groups) == 1:
        raise RankingError("'ranking' ties all responses, so it orders nothing")
    return tuple(groups)


def format_ranking(groups: Groups) -> list[int | list[int]]:
    """The JSON form of groups (the inverse of :func:`parse_ranking`)."""
    return [g[0] if len(g) == 1 else list(g) for g in groups]


def canonical_groups(value: Any, k: int) -> Groups:
    """:func:`parse_ranking` with each tie group's members in ascending order, so that equal
    rankings compare, and are stored, equal (``[[3, 0], 1, 2]`` and ``[[0, 3], 1, 2]``)."""
    return tuple(tuple(sorted(group)) for group in parse_ranking(value, k))


def canonical_ranking(value: Any, k: int) -> list[int | list[int]]:
    """The stored JSON form of a ranking: validated, tie members ascending."""
    return format_ranking(canonical_groups(value, k))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# ----------------------------------------------------------------------------------------------
# pairs


@dataclass(frozen=True)
class RankedPair:
    """One ordered pair implied by a ranking: ``chosen`` was ranked above ``rejected``."""

    ranking_id: Any  # the row index or id of the ranking it came from
    chosen: int  # response index
    rejected: int
    chosen_position: int  # 0-based group positions (ties share a position)
    rejected_position: int


def implied_pairs(
    groups: Groups, policy: PairPolicy = "all", ranking_id: Any = None
) -> list[RankedPair]:
    """The pairs a ranking implies under ``policy`` (see PAIR_POLICIES); tied responses never
    form a pair. Pairs come in order: by the chosen's group, then the rejected's, then index.
    """
    if policy not in PAIR_POLICIES:
        raise RankingError(
            f"unknown pair policy {policy!r}; choose from {', '.join(PAIR_POLICIES)}"
        )
    n = len(groups)

    def between(a: int, b: int) -> Iterator[RankedPair]:
        for chosen in groups[a]:
            for rejected in groups[b]:
                yield RankedPair(ranking_id, chosen, rejected, a, b)

    pairs: list[RankedPair] = []
    if policy == "all":
        for a in range(n):
            for b in range(a + 1, n):
                pairs.extend(between(a, b))
    elif policy == "best_worst":
        pairs.extend(between(0, n - 1))
    else:
        for a in range(n - 1):
            pairs.extend(between(a, a + 1))
    return pairs


def pair_rows(
    row: dict[str, Any], policy: PairPolicy = "all", ranking_id: Any = None
) -> list[dict[str, Any]]:
    """A listwise row (``prompt``, ``responses``, ``ranking``) as pair rows for any pair loss:
    ``prompt``, ``chosen``, ``rejected``, ``ranking_id``, ``chosen_position``,
    ``rejected_position`` (the engine's pair loader ignores the extra columns)."""
    responses = row["responses"]
    groups = parse_ranking(row["ranking"], len(responses))
    return [
        {
            "prompt": row["prompt"],
            "chosen": responses[p.chosen],
            "rejected": responses[p.rejected],
            "ranking_id": p.ranking_id,
            "chosen_position": p.chosen_position,
            "rejected_position": p.rejected_position,
        }
        for p in implied_pairs(groups, policy, ranking_id)
    ]


# ----------------------------------------------------------------------------------------------
# consensus


def average_ranks(groups: Groups, k: int) -> list[Fraction]:
    """Each response's 1-based rank; a tie group shares the mean of the ranks it spans
    (``[2, [0, 3], 1]`` gives 0 and 3 rank 2.5)."""
    ranks: list[Fraction | None] = [None] * k
    start = 1
    for group in groups:
        mean = Fraction(2 * start + len(group) - 1, 2)
        for m in group:
            ranks[m] = mean
        start += len(group)
    if any(r is None for r in ranks):
        raise RankingError(f"the groups do not cover all {k} responses")
    return [r for r in ranks if r is not None]


@dataclass(frozen=True)
class Consensus:
    groups: Groups  # the consensus ranking, best first; equal mean ranks are tied
    mean_ranks: tuple[Fraction, ...]  # per response, over the rankings (lower is better)
    borda_scores: tuple[Fraction, ...]  # per response: K - mean rank (higher is better)


def borda_consensus(rankings: Sequence[Groups], k: int) -> Consensus:
    """Borda count over several annotators' rankings of the same ``k`` responses.

    Every ranking gives each response its averaged rank (ties share the mean of their ranks);
    the consensus orders the responses by their mean rank over the rankings, and ties the ones
    whose mean ranks are exactly equal (exact fractions, no rounding).
    """
    if not rankings:
        raise RankingError("a consensus needs at least one ranking")
    totals = [Fraction(0)] * k
    for groups in rankings:
        for i, r in enumerate(average_ranks(groups, k)):
            totals[i] += r
    means = tuple(t / len(rankings) for t in totals)
    order = sorted(range(k), key=lambda i: (means[i], i))
    out: list[list[int]] = []
    for i in order:
        if out and means[out[-1][0]] == means[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return Consensus(tuple(tuple(g) for g in out), means, tuple(k - m for m in means))
