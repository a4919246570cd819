"""Statistics of pairwise evaluations: win-rates, Bradley-Terry with ties, the checkpoint gate.

A pure module (numpy only, no Django): the evaluation rounds, pages and API build on it.
docs/evaluation.md explains the statistics.
"""

from evaluation._data import Outcome
from evaluation.bradley_terry import (
    BradleyTerryFit,
    Leaderboard,
    LeaderboardRow,
    bradley_terry_leaderboard,
    fit_bradley_terry,
)
from evaluation.gate import GateDecision, GateRule, evaluate_gate
from evaluation.stats import (
    LengthControlledWinRate,
    LengthSummary,
    WinRate,
    length_controlled_win_rate,
    length_limit_share,
    length_summary,
    win_rate,
)

__all__ = [
    "BradleyTerryFit",
    "GateDecision",
    "GateRule",
    "Leaderboard",
    "LeaderboardRow",
    "LengthControlledWinRate",
    "LengthSummary",
    "Outcome",
    "WinRate",
    "bradley_terry_leaderboard",
    "evaluate_gate",
    "fit_bradley_terry",
    "length_controlled_win_rate",
    "length_limit_share",
    "length_summary",
    "win_rate",
]
