"""training.engine.rankings: the ranking format, pair conversion policies, Borda consensus."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from training.engine.rankings import (
    RankingError,
    average_ranks,
    borda_consensus,
    canonical_ranking,
    format_ranking,
    implied_pairs,
    pair_rows,
    parse_ranking,
)

REPO = Path(__file__).resolve().parents[2]


def pairs(groups, policy):
    return [
        (p.chosen, p.rejected, p.chosen_position, p.rejected_position)
        for p in implied_pairs(groups, policy, ranking_id=7)
    ]


def test_parse_ranking_with_ties_and_back():
    groups = parse_ranking([2, [0, 3], 1], 4)
    assert groups == ((2,), (0, 3), (1,))
    assert format_ranking(groups) == [2, [0, 3], 1]
    assert parse_ranking([[1], 0], 2) == ((1,), (0,))


@pytest.mark.parametrize(
    ("value", "k", "message"),
    [
        ([0, 1, 1], 3, "not a permutation of 0..2: index 1 appears twice"),
        ([0, 1], 3, "not a permutation of 0..2: index 2 is missing"),
        ([0, 1, 3], 3, "index 3 is out of range"),
        ([0, [1, [2]]], 3, "more than one level deep"),
        ([0, "1", 2], 3, "entries must be integers, got str"),
        ([0, True, 2], 3, "entries must be integers, got bool"),
        ([0, [], 1, 2], 3, "empty tie group"),
        ([[0, 1, 2]], 3, "ties all responses"),
        ({"0": 1}, 3, "must be a non-empty list"),
        ([], 3, "must be a non-empty list"),
    ],
)
def test_bad_rankings_are_refused(value, k, message):
    with pytest.raises(RankingError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_ranking(value, k)


def test_all_pairs_skip_tied_items():
    groups = parse_ranking([2, [0, 3], 1], 4)
    assert pairs(groups, "all") == [
        (2, 0, 0, 1),
        (2, 3, 0, 1),
        (2, 1, 0, 2),
        (0, 1, 1, 2),
        (3, 1, 1, 2),
    ]
    assert all(p.ranking_id == 7 for p in implied_pairs(groups, "all", 7))


def test_all_pairs_of_a_strict_ranking_are_k_choose_2():
    groups = parse_ranking([3, 1, 0, 2], 4)
    got = pairs(groups, "all")
    assert len(got) == 6
    assert [(c, r) for c, r, _, _ in got] == [(3, 1), (3, 0), (3, 2), (1, 0), (1, 2), (0, 2)]


def test_best_worst_and_adjacent():
    groups = parse_ranking([[4, 1], 0, [2, 3]], 5)
    assert pairs(groups, "best_worst") == [(4, 2, 0, 2), (4, 3, 0, 2), (1, 2, 0, 2), (1, 3, 0, 2)]
    assert pairs(groups, "adjacent") == [
        (4, 0, 0, 1),
        (1, 0, 0, 1),
        (0, 2, 1, 2),
        (0, 3, 1, 2),
    ]
    strict = parse_ranking([1, 2, 0], 3)
    assert pairs(strict, "best_worst") == [(1, 0, 0, 2)]
    assert pairs(strict, "adjacent") == [(1, 2, 0, 1), (2, 0, 1, 2)]
    with pytest.raises(RankingError, match="unknown pair policy 'random'"):
        implied_pairs(strict, "random")  # type: ignore[arg-type]


def test_pair_rows_carry_their_ranking():
    row = {"prompt": "q", "responses": ["a", "b", "c"], "ranking": [1, [0, 2]]}
    assert pair_rows(row, "all", ranking_id="r1") == [
        {
            "prompt": "q",
            "chosen": "b",
            "rejected": "a",
            "ranking_id": "r1",
            "chosen_position": 0,
            "rejected_position": 1,
        },
        {
            "prompt": "q",
            "chosen": "b",
            "rejected": "c",
            "ranking_id": "r1",
            "chosen_position": 0,
            "rejected_position": 1,
        },
    ]


def test_average_ranks_share_the_mean_of_a_tie():
    assert average_ranks(parse_ranking([2, [0, 3], 1], 4), 4) == [
        Fraction(5, 2),
        4,
        1,
        Fraction(5, 2),
    ]
    assert average_ranks(parse_ranking([[0, 1, 2], 3], 4), 4) == [2, 2, 2, 4]


def test_borda_consensus_orders_by_mean_rank_and_ties_exact_equals():
    k = 3
    rankings = [parse_ranking(r, k) for r in ([0, 1, 2], [1, 0, 2], [0, [1, 2]])]
    c = borda_consensus(rankings, k)
    # mean ranks: 0: (1+2+1)/3 = 4/3; 1: (2+1+2.5)/3 = 11/6; 2: (3+3+2.5)/3 = 17/6
    assert c.mean_ranks == (Fraction(4, 3), Fraction(11, 6), Fraction(17, 6))
    assert c.groups == ((0,), (1,), (2,))
    assert c.borda_scores == (Fraction(5, 3), Fraction(7, 6), Fraction(1, 6))
    split = borda_consensus([parse_ranking([0, 1, 2], k), parse_ranking([1, 0, 2], k)], k)
    assert split.groups == ((0, 1), (2,))
    with pytest.raises(RankingError, match="at least one ranking"):
        borda_consensus([], k)


def test_rankings_module_is_pure_python_and_listwise_imports_no_django():
    check = (
        "import sys, training.engine.rankings\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'torch', 'django', 'labeling'}]\n"
        "assert not bad, bad\n"
        "import training.engine.listwise\n"
        "bad = [m for m in sys.modules\n"
        "       if m.split('.')[0] in {'django', 'celery', 'labeling', 'workers', 'config'}]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_canonical_ranking_orders_tie_members_so_equal_rankings_are_equal():
    assert canonical_ranking([[3, 0], 1, 2], 4) == canonical_ranking([[0, 3], 1, 2], 4)
    assert canonical_ranking([2, [3, 0], 1], 4) == [2, [0, 3], 1]
    with pytest.raises(RankingError, match="appears twice"):
        canonical_ranking([0, 0, 1], 3)
