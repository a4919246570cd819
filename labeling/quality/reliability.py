"""Per-annotator reliability, the thresholds that flag an annotator, and soft labels.

The latent-ability model is crowd-kit's Dawid-Skene (one 4x4 confusion matrix per annotator
over A / B / tie / both bad, fitted by EM); docs/quality.md says why it was chosen. An
annotator's *reliability* is the model's probability that their vote equals the true choice,
``sum_k prior_k * P(vote = k | truth = k)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from .agreement import leave_one_out_consensus
from .stats import wilson_interval
from .thresholds import Thresholds
from .votes import BOTH_BAD, CHOICES, TIE, A, B, EncodedVotes

K = len(CHOICES)


@dataclass(frozen=True)
class DawidSkeneFit:
    """The fitted model: ``posterior`` is ``(n_comparisons, 4)`` over the true choice (rows in
    comparison-code order), ``confusion`` is ``(n_annotators, 4 observed, 4 true)`` with
    ``P(vote | truth)``, ``prior`` the fitted class shares, ``reliability`` per annotator."""

    posterior: npt.NDArray[np.float64]
    confusion: npt.NDArray[np.float64]
    prior: npt.NDArray[np.float64]
    reliability: npt.NDArray[np.float64]
    iterations: int


def dawid_skene_input(votes: EncodedVotes) -> pd.DataFrame:
    """The votes in crowd-kit's ``task``/``worker``/``label`` layout (integer codes)."""
    return pd.DataFrame(
        {"task": votes.comparison, "worker": votes.annotator, "label": votes.choice}
    )


def fit_dawid_skene(votes: EncodedVotes, n_iter: int = 100, tol: float = 1e-5) -> DawidSkeneFit:
    # Imported here: crowd-kit's package import also loads its text and embedding aggregators
    # (nltk and more), seconds that a reader of cached figures should not pay.
    from crowdkit.aggregation import DawidSkene

    with warnings.catch_warnings():
        # crowd-kit 1.4.2 passes keywords pandas 3 deprecates (copy=, inplace=); harmless here.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="crowdkit")
        model = DawidSkene(n_iter=n_iter, tol=tol).fit(dawid_skene_input(votes))
    if model.probas_ is None or model.priors_ is None or model.errors_ is None:
        raise RuntimeError("crowd-kit's DawidSkene.fit returned without fitted attributes")
    labels = list(range(K))
    posterior = (
        model.probas_.reindex(index=range(votes.n_comparisons), columns=labels)
        .fillna(0.0)
        .to_numpy(dtype=np.float64)
    )
    prior = model.priors_.reindex(labels).fillna(0.0).to_numpy(dtype=np.float64)
    errors = model.errors_.reindex(columns=labels).fillna(0.0)
    confusion = np.zeros((votes.n_annotators, K, K))
    worker = errors.index.get_level_values(0).to_numpy(dtype=np.int64)
    observed = errors.index.get_level_values(1).to_numpy(dtype=np.int64)
    confusion[worker, observed, :] = errors.to_numpy(dtype=np.float64)
    diagonal = confusion[:, np.arange(K), np.arange(K)]
    return DawidSkeneFit(
        posterior=posterior,
        confusion=confusion,
        prior=prior,
        reliability=diagonal @ prior,
        iterations=len(model.loss_history_),
    )


def reading_floor(votes: EncodedVotes, thresholds: Thresholds) -> npt.NDArray[np.float64]:
    """Seconds below which a vote cannot have read both responses."""
    return np.maximum(
        thresholds.reading_min_seconds,
        (votes.len_a + votes.len_b) / thresholds.reading_chars_per_second,
    )


def _per_annotator(votes: EncodedVotes, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    return np.bincount(votes.annotator[mask], minlength=votes.n_annotators).astype(np.int64)


def _share(k: npt.NDArray[np.int64], n: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, k / n, np.nan)


def annotator_table(
    votes: EncodedVotes, fit: DawidSkeneFit, thresholds: Thresholds
) -> pd.DataFrame:
    """One row per annotator with every reliability figure, ``flagged`` and plain ``reasons``."""
    everyone = np.ones(votes.n_votes, dtype=bool)
    n_votes = _per_annotator(votes, everyone)
    decisive = (votes.choice == A) | (votes.choice == B)
    n_decisive = _per_annotator(votes, decisive)
    n_left = _per_annotator(votes, decisive & (votes.choice == votes.left))
    left_low, left_high = wilson_interval(n_left, n_decisive)
    left_p = np.full(votes.n_annotators, np.nan)
    for i in np.flatnonzero(n_decisive):
        left_p[i] = stats.binomtest(int(n_left[i]), int(n_decisive[i]), 0.5).pvalue

    timed = ~np.isnan(votes.seconds)
    fast = timed & (votes.seconds < reading_floor(votes, thresholds))
    n_timed = _per_annotator(votes, timed)
    n_fast = _per_annotator(votes, fast)
    median_seconds = (
        pd.Series(votes.seconds[timed])
        .groupby(votes.annotator[timed])
        .median()
        .reindex(range(votes.n_annotators))
        .to_numpy(dtype=np.float64)
    )

    consensus = leave_one_out_consensus(votes)
    has_consensus = consensus >= 0
    n_consensus = _per_annotator(votes, has_consensus)
    n_consensus_agree = _per_annotator(votes, has_consensus & (votes.choice == consensus))

    is_gold = votes.gold >= 0
    n_gold = _per_annotator(votes, is_gold)
    n_gold_correct = _per_annotator(votes, is_gold & (votes.choice == votes.gold))
    gold_low, gold_high = wilson_interval(n_gold_correct, n_gold)

    table = pd.DataFrame(
        {
            "annotator": votes.annotator_ids,
            "votes": n_votes,
            "reliability": fit.reliability,
            "decisive_votes": n_decisive,
            "left_choices": n_left,
            "left_share": _share(n_left, n_decisive),
            "left_ci_low": left_low,
            "left_ci_high": left_high,
            "left_p_value": left_p,
            "tie_rate": _share(_per_annotator(votes, votes.choice == TIE), n_votes),
            "both_bad_rate": _share(_per_annotator(votes, votes.choice == BOTH_BAD), n_votes),
            "median_seconds": median_seconds,
            "timed_votes": n_timed,
            "fast_votes": n_fast,
            "fast_share": _share(n_fast, n_timed),
            "consensus_votes": n_consensus,
            "consensus_agreement": _share(n_consensus_agree, n_consensus),
            "gold_votes": n_gold,
            "gold_correct": n_gold_correct,
            "gold_accuracy": _share(n_gold_correct, n_gold),
            "gold_ci_low": gold_low,
            "gold_ci_high": gold_high,
        }
    )
    reasons = [_reasons(row, thresholds) for row in table.to_dict("records")]
    table["flagged"] = [bool(r) for r in reasons]
    table["reasons"] = reasons
    return table


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _ci(low: float, high: float) -> str:
    return f"95% CI {_pct(low)} to {_pct(high)}"


def _reasons(r: Mapping[str, Any], t: Thresholds) -> list[str]:
    """Plain-word reasons an annotator crosses a threshold (empty: not flagged)."""
    out: list[str] = []
    if r["gold_votes"] >= t.min_gold_votes and r["gold_ci_high"] < t.min_gold_accuracy:
        interval = _ci(r["gold_ci_low"], r["gold_ci_high"])
        out.append(
            f"answered {r['gold_correct']} of {r['gold_votes']} gold items correctly "
            f"({_pct(r['gold_accuracy'])}, {interval}), below {_pct(t.min_gold_accuracy)}"
        )
    if r["votes"] < t.min_votes:
        return out
    if (
        r["decisive_votes"] > 0
        and r["left_p_value"] < t.position_max_p_value
        and abs(r["left_share"] - 0.5) >= t.position_min_deviation
    ):
        interval = _ci(r["left_ci_low"], r["left_ci_high"])
        out.append(
            f"chose the response on the left in {_pct(r['left_share'])} of "
            f"{r['decisive_votes']} decisive votes ({interval}; "
            f"binomial test against 50%: p = {r['left_p_value']:.2g})"
        )
    if r["timed_votes"] > 0 and r["fast_share"] > t.max_fast_share:
        share = _pct(r["fast_share"])
        out.append(
            f"{r['fast_votes']} of {r['timed_votes']} timed votes ({share}) were faster than "
            f"the time needed to read both responses (more than {_pct(t.max_fast_share)})"
        )
    if r["consensus_votes"] > 0 and r["consensus_agreement"] < t.min_consensus_agreement:
        out.append(
            f"agreed with the other annotators' majority in {_pct(r['consensus_agreement'])} of "
            f"{r['consensus_votes']} votes (less than {_pct(t.min_consensus_agreement)})"
        )
    if r["reliability"] < t.min_reliability:
        out.append(
            "the Dawid-Skene model puts the chance that their vote is right at "
            f"{_pct(r['reliability'])} (less than {_pct(t.min_reliability)})"
        )
    if r["tie_rate"] > t.max_tie_rate:
        out.append(
            f"voted tie in {_pct(r['tie_rate'])} of votes (more than {_pct(t.max_tie_rate)})"
        )
    if r["both_bad_rate"] > t.max_both_bad_rate:
        out.append(
            f"voted both bad in {_pct(r['both_bad_rate'])} of votes "
            f"(more than {_pct(t.max_both_bad_rate)})"
        )
    return out


def soft_labels(votes: EncodedVotes, fit: DawidSkeneFit) -> pd.DataFrame:
    """Per comparison: ``p_chosen``, the fitted probability that A beats B, counting a tie as half
    a win and leaving both-bad out, ``(P(A) + P(tie) / 2) / (P(A) + P(B) + P(tie))`` (0.5 where
    that is 0/0); ``weight``, the probability that the pair is a real preference pair,
    ``1 - P(both bad)``; ``label``, the most probable choice."""
    posterior = fit.posterior
    preference = posterior[:, A] + posterior[:, B] + posterior[:, TIE]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_chosen = np.where(
            preference > 0, (posterior[:, A] + 0.5 * posterior[:, TIE]) / preference, 0.5
        )
    return pd.DataFrame(
        {
            "comparison": votes.comparison_ids,
            "p_chosen": np.clip(p_chosen, 0.0, 1.0),
            "weight": np.clip(1.0 - posterior[:, BOTH_BAD], 0.0, 1.0),
            "label": np.asarray(CHOICES, dtype=object)[posterior.argmax(axis=1)],
        }
    )
