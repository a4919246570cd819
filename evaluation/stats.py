"""Win-rate, length-controlled win-rate and length statistics of a pairwise evaluation.

Each comparison puts a response of model A beside a response of model B to the same prompt and
records the outcome from A's side: ``"win"``, ``"loss"`` or ``"tie"``. ``groups`` gives each
comparison's prompt id; bootstrap intervals resample prompts (see ``evaluation._data``).
docs/evaluation.md explains the statistics and their sources.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation._data import (
    FloatArray,
    check_bootstrap_arguments,
    check_same_length,
    group_codes,
    outcome_scores,
    percentile_interval,
    resampled_group_counts,
)

_LC_CELLS = 250_000
# A multinomial draw over prompt kinds costs about this many uniform prompt draws per kind.
_KINDS_PER_PROMPT_DRAW = 8


@dataclass(frozen=True)
class WinRate:
    """A's win-rate over B with a prompt-level bootstrap interval."""

    estimate: float  # (wins + ties / 2) / n
    ci_low: float
    ci_high: float
    confidence: float  # the interval's nominal coverage, e.g. 0.95
    n: int  # comparisons
    wins: int
    losses: int
    ties: int
    n_prompts: int
    n_resamples: int


def win_rate(
    outcomes: Sequence[str],
    groups: Sequence[Hashable],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> WinRate:
    """Win-rate of A over B, ``(wins + ties / 2) / n``, with a bootstrap interval over prompts.

    Resample ``r`` draws the ``G`` prompts with replacement, prompt ``g`` ``c[r, g]`` times, and
    its win-rate is ``sum_g c[r, g] S_g / sum_g c[r, g] N_g`` where ``S_g`` is A's score summed
    over prompt ``g``'s comparisons (win 1, tie 1/2, loss 0) and ``N_g`` their number. The
    interval is the central ``confidence`` percentile interval of the resampled win-rates.
    The same ``seed`` and data give the same interval.
    """
    scores = outcome_scores(outcomes)
    check_same_length(len(scores), groups=groups)
    check_bootstrap_arguments(n_resamples, confidence)
    codes, n_groups = group_codes(groups)
    # Per-prompt score sums S_g and comparison counts N_g, side by side as a (G, 2) matrix.
    per_group = np.stack(
        [
            np.bincount(codes, weights=scores, minlength=n_groups),
            np.bincount(codes, minlength=n_groups).astype(np.float64),
        ],
        axis=1,
    )
    rng = np.random.default_rng(seed)
    # Only the resampled sums matter, and prompts with the same (S_g, N_g) are interchangeable
    # in them. When few distinct pairs occur (one vote per prompt gives at most three), drawing
    # how many prompts of each kind a resample holds, a multinomial over the kinds, has exactly
    # the same distribution as drawing the prompts and costs far less.
    kinds, inverse = np.unique(per_group, axis=0, return_inverse=True)
    if len(kinds) * _KINDS_PER_PROMPT_DRAW < n_groups:
        frequency = np.bincount(inverse.ravel(), minlength=len(kinds)) / n_groups
        resampled = rng.multinomial(n_groups, frequency, size=n_resamples) @ kinds
    else:
        resampled = np.concatenate(
            [counts @ per_group for counts in resampled_group_counts(n_groups, n_resamples, rng)]
        )
    low, high = percentile_interval(resampled[:, 0] / resampled[:, 1], confidence)
    return WinRate(
        estimate=float(scores.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        n=len(scores),
        wins=int(np.count_nonzero(scores == 1.0)),
        losses=int(np.count_nonzero(scores == 0.0)),
        ties=int(np.count_nonzero(scores == 0.5)),
        n_prompts=n_groups,
        n_resamples=n_resamples,
    )


@dataclass(frozen=True)
class LengthControlledWinRate:
    """A's win-rate over B at equal response length, beside the raw win-rate."""

    estimate: float  # sigmoid(intercept): the fitted win-rate where A and B are equally long
    ci_low: float
    ci_high: float
    confidence: float
    raw_win_rate: float  # (wins + ties / 2) / n, for comparison
    intercept: float  # a in sigmoid(a + b * d)
    slope: float  # b: the change in log-odds per standard deviation of the length difference
    length_difference_scale: float  # the standard deviation that d is divided by
    n: int
    n_prompts: int
    n_resamples: int


def _sigmoid(z: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic function
    return result


def _fit_logistic(
    d: FloatArray,
    y: FloatArray,
    weights: FloatArray,
    l2: float,
    start: FloatArray,
    max_iter: int = 50,
) -> FloatArray:
    """Newton's method for ``sigmoid(a + b d)`` with fractional targets, many fits at once.

    ``weights`` is ``(R, n)``: row ``r`` weights the comparisons for fit ``r``; ``start`` is
    ``(R, 2)``. Each fit maximises the concave ``sum_k w_k [y_k z_k - log(1 + e^{z_k})]
    - l2/2 (a^2 + b^2)`` with ``z_k = a + b d_k``; returns the ``(R, 2)`` maxima.
    """
    params = start.copy()
    for _ in range(max_iter):
        p = _sigmoid(params[:, :1] + params[:, 1:] * d)
        residual = weights * (y - p)
        grad_a = residual.sum(axis=1) - l2 * params[:, 0]
        grad_b = residual @ d - l2 * params[:, 1]
        curvature = weights * p * (1.0 - p)
        h_aa = curvature.sum(axis=1) + l2
        h_ab = curvature @ d
        h_bb = curvature @ (d * d) + l2
        det = h_aa * h_bb - h_ab * h_ab
        step = np.stack([(h_bb * grad_a - h_ab * grad_b), (h_aa * grad_b - h_ab * grad_a)], 1)
        # A bounded step keeps a far-off start from overshooting; near the optimum it is a
        # plain Newton step.
        step = np.clip(step / det[:, None], -4.0, 4.0)
        params += step
        if np.max(np.abs(step)) < 1e-9:
            break
    return params


def length_controlled_win_rate(
    outcomes: Sequence[str],
    groups: Sequence[Hashable],
    length_a: Sequence[float],
    length_b: Sequence[float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    l2: float = 1e-3,
) -> LengthControlledWinRate:
    """Win-rate of A over B at equal length: ``sigmoid(a)`` of ``P(A wins) = sigmoid(a + b d)``.

    ``d = (length_a - length_b) / s`` where ``s`` is the standard deviation of
    ``length_a - length_b`` over all comparisons (not centred, so ``d = 0`` means equal length;
    ``s = 1`` when every difference is 0; a constant non-zero difference is refused, since
    length and model cannot then be told apart). The fit maximises the Bernoulli log-likelihood
    with fractional targets (win 1, tie 1/2, loss 0) minus a small ridge ``l2/2 (a^2 + b^2)``
    that keeps the fit finite when A wins or loses every comparison. The interval is the
    percentile interval of ``sigmoid(a)`` refitted on prompt-level bootstrap resamples.
    """
    y = outcome_scores(outcomes)
    check_same_length(len(y), groups=groups, length_a=length_a, length_b=length_b)
    check_bootstrap_arguments(n_resamples, confidence)
    if l2 < 0:
        raise ValueError(f"l2 must not be negative, not {l2}")
    difference = np.asarray(length_a, dtype=np.float64) - np.asarray(length_b, dtype=np.float64)
    if not np.all(np.isfinite(difference)):
        raise ValueError("every length must be a finite number")
    scale = float(difference.std())
    if scale == 0.0:
        if np.any(difference != 0.0):
            raise ValueError(
                f"A's responses are always {difference[0]:g} longer than B's: with no spread in "
                "the length difference the effect of length cannot be told from the models'"
            )
        scale = 1.0
    d = difference / scale
    codes, n_groups = group_codes(groups)

    fitted = _fit_logistic(d, y, np.ones((1, len(y))), l2, np.zeros((1, 2)))[0]
    rng = np.random.default_rng(seed)
    intercepts = []
    # Fits run a few hundred thousand (resample, comparison) cells at a time, which keeps the
    # Newton iterations' temporaries small enough to stay in cache.
    rows = max(1, _LC_CELLS // len(y))
    for counts in resampled_group_counts(n_groups, n_resamples, rng):
        for first in range(0, len(counts), rows):
            weights = counts[first : first + rows, codes]
            start = np.broadcast_to(fitted, (len(weights), 2))
            intercepts.append(_fit_logistic(d, y, weights, l2, start)[:, 0])
    low, high = percentile_interval(_sigmoid(np.concatenate(intercepts)), confidence)
    return LengthControlledWinRate(
        estimate=float(_sigmoid(fitted[:1])[0]),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        raw_win_rate=float(y.mean()),
        intercept=float(fitted[0]),
        slope=float(fitted[1]),
        length_difference_scale=scale,
        n=len(y),
        n_prompts=n_groups,
        n_resamples=n_resamples,
    )


@dataclass(frozen=True)
class LengthSummary:
    """Length statistics of one model's responses."""

    n: int
    mean_length: float
    at_limit_share: float | None  # share of responses that reached the limit; None without one


def length_limit_share(lengths: Sequence[float], limit: float) -> float:
    """Share of responses whose length reached the generation limit: ``#(length >= limit) / n``."""
    if len(lengths) == 0:
        raise ValueError("no responses: the lengths are empty")
    if limit <= 0:
        raise ValueError(f"the length limit must be positive, not {limit}")
    return float(np.mean(np.asarray(lengths, dtype=np.float64) >= limit))


def length_summary(
    models: Sequence[Hashable], lengths: Sequence[float], *, limit: float | None = None
) -> dict[Hashable, LengthSummary]:
    """Per model: responses, mean length and (given ``limit``) the share that reached it.

    ``models[k]`` names the model that wrote response ``k`` of length ``lengths[k]`` (tokens,
    or whichever unit ``limit`` is in). Models appear in order of first appearance.
    """
    if len(lengths) == 0:
        raise ValueError("no responses: the lengths are empty")
    check_same_length(len(lengths), models=models)
    if limit is not None and limit <= 0:
        raise ValueError(f"the length limit must be positive, not {limit}")
    values = np.asarray(lengths, dtype=np.float64)
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError("every length must be a finite number of at least 0")
    codes, n_models = group_codes(models)
    counts = np.bincount(codes, minlength=n_models)
    sums = np.bincount(codes, weights=values, minlength=n_models)
    at_limit = (
        None
        if limit is None
        else np.bincount(codes, weights=(values >= limit).astype(np.float64), minlength=n_models)
    )
    names = list(dict.fromkeys(models))
    return {
        name: LengthSummary(
            n=int(counts[k]),
            mean_length=float(sums[k] / counts[k]),
            at_limit_share=None if at_limit is None else float(at_limit[k] / counts[k]),
        )
        for k, name in enumerate(names)
    }
