"""Inter-annotator agreement over the choices (A, B, tie, both bad as four nominal values).

* Krippendorff's alpha through the ``krippendorff`` package, from the votes-per-choice counts of
  every comparison with at least two votes (the others carry no agreement information).
* Raw percent agreement: of all pairs of votes on the same comparison, the share that agree.
* Per annotator pair: the same two figures over the comparisons both voted on. Alpha for two
  coders has a closed form (Krippendorff 2011, "Computing Krippendorff's alpha-reliability",
  section on nominal data), computed here for all pairs at once; a test checks it against the
  package pair by pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import krippendorff
import numpy as np
import numpy.typing as npt
import pandas as pd

from .votes import CHOICES, EncodedVotes, value_counts


@dataclass(frozen=True)
class Agreement:
    """Agreement over one set of votes (the project, or one round).

    ``alpha`` and ``percent_agreement`` are None when no comparison has two votes; ``alpha`` also
    when every pairable vote has the same choice (the expected disagreement is zero).
    ``votes_per_comparison`` maps a vote count to how many comparisons got that many votes;
    ``unanimous``/``majority``/``split`` count the comparisons with at least two votes whose most
    common choice got every vote / more than any other choice / tied with another choice.
    """

    n_votes: int
    n_comparisons: int
    pairable_comparisons: int
    alpha: float | None
    percent_agreement: float | None
    vote_pairs: int
    votes_per_comparison: dict[int, int]
    unanimous: int
    majority: int
    split: int


def krippendorff_alpha(counts: npt.NDArray[np.int64]) -> float | None:
    """Nominal alpha from a ``(units, values)`` count matrix through the ``krippendorff`` package;
    None where it is undefined."""
    pairable = counts[counts.sum(axis=1) >= 2]
    totals = pairable.sum(axis=0)
    if len(pairable) == 0 or (totals > 0).sum() < 2:
        return None
    return float(
        krippendorff.alpha(
            value_counts=pairable,
            value_domain=list(range(counts.shape[1])),
            level_of_measurement="nominal",
        )
    )


def agreement(votes: EncodedVotes) -> Agreement:
    counts = value_counts(votes)
    per_comparison = counts.sum(axis=1)
    pairable = per_comparison >= 2
    pairs_total = int((per_comparison * (per_comparison - 1)).sum() // 2)
    pairs_agreeing = int((counts * (counts - 1)).sum() // 2)
    top = counts.max(axis=1)
    top_ties = (counts == top[:, None]).sum(axis=1)
    sizes, how_many = np.unique(per_comparison, return_counts=True)
    return Agreement(
        n_votes=votes.n_votes,
        n_comparisons=votes.n_comparisons,
        pairable_comparisons=int(pairable.sum()),
        alpha=krippendorff_alpha(counts),
        percent_agreement=pairs_agreeing / pairs_total if pairs_total else None,
        vote_pairs=pairs_total,
        votes_per_comparison={int(s): int(c) for s, c in zip(sizes, how_many, strict=True)},
        unanimous=int((pairable & (top == per_comparison)).sum()),
        majority=int((pairable & (top < per_comparison) & (top_ties == 1)).sum()),
        split=int((pairable & (top_ties > 1)).sum()),
    )


def vote_pairs(votes: EncodedVotes) -> pd.DataFrame:
    """Every unordered pair of votes on the same comparison: columns ``first``/``second`` (annotator
    codes, first < second), ``choice_first``/``choice_second``, ``round``."""
    order = np.lexsort((votes.annotator, votes.comparison))
    comparison = votes.comparison[order]
    sizes = np.bincount(comparison, minlength=votes.n_comparisons)
    starts = np.cumsum(sizes) - sizes
    # Each sorted vote pairs with the votes after it in its comparison: partners[i] of them.
    partners = sizes[comparison] - (np.arange(len(order)) - starts[comparison]) - 1
    first = np.repeat(np.arange(len(order)), partners)
    block_starts = np.cumsum(partners) - partners
    second = first + 1 + (np.arange(len(first)) - np.repeat(block_starts, partners))
    first_vote, second_vote = order[first], order[second]
    return pd.DataFrame(
        {
            "first": votes.annotator[first_vote],
            "second": votes.annotator[second_vote],
            "choice_first": votes.choice[first_vote],
            "choice_second": votes.choice[second_vote],
            "round": votes.round[first_vote],
        }
    )


def pairwise_agreement(votes: EncodedVotes, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Agreement per annotator pair that voted on at least one common comparison.

    Columns: ``annotator_a``, ``annotator_b`` (ids, in sorted order), ``overlap`` (common
    comparisons), ``percent_agreement``, ``alpha`` (NaN where undefined). ``pairs`` may pass
    :func:`vote_pairs` already computed (or filtered to a round).
    """
    if pairs is None:
        pairs = vote_pairs(votes)
    k = len(CHOICES)
    first = pairs["first"].to_numpy()
    second = pairs["second"].to_numpy()
    key = first * votes.n_annotators + second
    keys, pair_index = np.unique(key, return_inverse=True)
    n_pairs = len(keys)
    overlap = np.bincount(pair_index, minlength=n_pairs)
    same = pairs["choice_first"].to_numpy() == pairs["choice_second"].to_numpy()
    agreeing = np.bincount(pair_index, weights=same, minlength=n_pairs)
    # Value totals n_c over both coders' values on their common units.
    flat = np.zeros(n_pairs * k)
    for column in ("choice_first", "choice_second"):
        flat += np.bincount(pair_index * k + pairs[column].to_numpy(), minlength=n_pairs * k)
    marginals = flat.reshape(n_pairs, k)
    total_values = 2.0 * overlap
    expected = total_values**2 - (marginals**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k, with n = 2 * overlap
        # values and each disagreeing unit adding 2 to the off-diagonal coincidences.
        alpha = 1.0 - (total_values - 1.0) * 2.0 * (overlap - agreeing) / expected
    alpha = np.where(expected > 0, alpha, np.nan)
    ids = votes.annotator_ids
    return pd.DataFrame(
        {
            "annotator_a": ids[keys // votes.n_annotators],
            "annotator_b": ids[keys % votes.n_annotators],
            "overlap": overlap,
            "percent_agreement": agreeing / overlap,
            "alpha": alpha,
        }
    )


def leave_one_out_consensus(votes: EncodedVotes) -> npt.NDArray[np.int64]:
    """For each vote, the majority choice of the other votes on its comparison, or -1 where the
    others are absent or tied between choices."""
    counts = value_counts(votes)
    others = counts[votes.comparison].copy()
    others[np.arange(votes.n_votes), votes.choice] -= 1
    top = others.max(axis=1)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    return np.where((top > 0) & unique_top, others.argmax(axis=1), -1).astype(np.int64)
