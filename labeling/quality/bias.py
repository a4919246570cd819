"""Bias audit over a set of votes: position, length, and win-rate per model.

All three read decisive votes only (A or B); a tie or both-bad prefers neither side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from .stats import LogisticFit, Proportion, fit_logistic, proportion, wilson_interval
from .votes import BOTH_BAD, TIE, A, B, EncodedVotes


def position_bias(votes: EncodedVotes) -> Proportion:
    """Left choices among decisive votes, with a Wilson CI and a binomial test against 0.5."""
    decisive = (votes.choice == A) | (votes.choice == B)
    left = int((decisive & (votes.choice == votes.left)).sum())
    return proportion(left, int(decisive.sum()))


@dataclass(frozen=True)
class LengthBias:
    """``longer_chosen``: among decisive votes on responses of different length, how often the
    chosen one is the longer (tested against 0.5). ``fit``: logistic regression of "chose A" on
    the standardised length difference ``(len_a - len_b - mean) / sd``; ``fit.slope`` is the change
    in log-odds of choosing A per standard deviation of length difference (0: length does not
    matter; ``odds_ratio_per_sd = exp(slope)``). ``length_difference_sd`` is that sd in
    characters. ``fit`` is None where it does not exist (see ``fit_logistic``)."""

    longer_chosen: Proportion
    fit: LogisticFit | None
    odds_ratio_per_sd: float | None
    length_difference_mean: float | None
    length_difference_sd: float | None


def length_bias(votes: EncodedVotes) -> LengthBias:
    decisive = (votes.choice == A) | (votes.choice == B)
    difference = (votes.len_a - votes.len_b)[decisive]
    chose_a = (votes.choice[decisive] == A).astype(np.float64)
    differs = difference != 0
    longer_chosen = proportion(
        int(((difference > 0) == (chose_a == 1))[differs].sum()), int(differs.sum())
    )
    if len(difference) < 2 or difference.std() == 0:
        return LengthBias(longer_chosen, None, None, None, None)
    mean, sd = float(difference.mean()), float(difference.std())
    fit = fit_logistic((difference - mean) / sd, chose_a)
    odds = float(np.exp(fit.slope)) if fit is not None else None
    return LengthBias(longer_chosen, fit, odds, mean, sd)


def model_win_rates(votes: EncodedVotes) -> pd.DataFrame:
    """Per model that wrote a response: ``appearances`` (votes on a comparison with that model on
    one side and another model on the other), ``wins``, ``losses``, ``ties``, ``both_bad``, and
    ``win_rate`` = wins / (wins + losses) with a 95% Wilson CI, best first. Comparisons of a model
    with itself or with an unknown model are left out."""
    known = (votes.model_a >= 0) & (votes.model_b >= 0) & (votes.model_a != votes.model_b)
    n_models = len(votes.model_names)
    choice = votes.choice[known]
    side_a, side_b = votes.model_a[known], votes.model_b[known]

    def count(model: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return np.bincount(model[mask], minlength=n_models).astype(np.int64)

    every = np.ones(len(choice), dtype=bool)
    table = pd.DataFrame(
        {
            "model": votes.model_names.to_numpy(dtype=object),
            "appearances": count(side_a, every) + count(side_b, every),
            "wins": count(side_a, choice == A) + count(side_b, choice == B),
            "losses": count(side_a, choice == B) + count(side_b, choice == A),
            "ties": count(side_a, choice == TIE) + count(side_b, choice == TIE),
            "both_bad": count(side_a, choice == BOTH_BAD) + count(side_b, choice == BOTH_BAD),
        }
    )
    table = table[table["appearances"] > 0].copy()
    decided = (table["wins"] + table["losses"]).to_numpy()
    low, high = wilson_interval(table["wins"].to_numpy(), decided)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["win_rate"] = np.where(decided > 0, table["wins"].to_numpy() / decided, np.nan)
    table["win_ci_low"] = low
    table["win_ci_high"] = high
    return table.sort_values(["win_rate", "model"], ascending=[False, True]).reset_index(drop=True)
