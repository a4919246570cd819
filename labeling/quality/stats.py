"""Small statistical building blocks: proportions with Wilson intervals, a two-parameter logistic
fit. Checked against scipy and scikit-learn in tests/labeling/quality/test_stats.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

Z_95 = 1.959963984540054
"""The standard normal quantile for a two-sided 95% interval."""


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float = Z_95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Wilson score interval, vectorised; NaN where there are no trials.

    The same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``trials`` with a 95% Wilson interval and an exact two-sided binomial
    test against ``null`` (``scipy.stats.binomtest``). Share, interval and p are None without
    trials."""

    successes: int
    trials: int
    share: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    null: float = 0.5


def proportion(successes: int, trials: int, null: float = 0.5) -> Proportion:
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return Proportion(successes, trials, None, None, None, None, null)
    low, high = wilson_interval(successes, trials)
    p_value = float(stats.binomtest(successes, trials, null, alternative="two-sided").pvalue)
    return Proportion(successes, trials, successes / trials, float(low), float(high), p_value, null)


@dataclass(frozen=True)
class LogisticFit:
    """``P(y = 1) = sigmoid(intercept + slope * x)`` by maximum likelihood, with the slope's
    standard error from the observed information and its Wald p-value."""

    intercept: float
    slope: float
    slope_se: float
    slope_p_value: float
    n: int


def fit_logistic(x: npt.ArrayLike, y: npt.ArrayLike, max_iter: int = 50) -> LogisticFit | None:
    """Newton-Raphson (IRLS) for one predictor; None when the fit does not exist (fewer than 3
    points, one class only, a constant predictor, or separation, where the slope diverges)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be 1-d arrays of the same length")
    n = len(xs)
    if n < 3 or ys.min() == ys.max() or xs.min() == xs.max():
        return None
    # The 2x2 information matrix and the score from sums, without an n x 2 design matrix.
    xx = xs * xs
    beta = np.zeros(2)

    def information_at(mu: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        w = mu * (1.0 - mu)
        wx = w @ xs
        return np.array([[w.sum(), wx], [wx, w @ xx]])

    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-(beta[0] + beta[1] * xs)))
        residual = ys - mu
        try:
            step = np.linalg.solve(information_at(mu), [residual.sum(), residual @ xs])
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.isfinite(beta).all() or np.abs(beta).max() > 50:
            return None  # separation: the likelihood has no maximum
        if np.abs(step).max() < 1e-10:
            break
    else:
        return None
    mu = 1.0 / (1.0 + np.exp(-(beta[0] + beta[1] * xs)))
    covariance = np.linalg.inv(information_at(mu))
    se = math.sqrt(covariance[1, 1])
    p_value = float(2 * stats.norm.sf(abs(beta[1]) / se))
    return LogisticFit(float(beta[0]), float(beta[1]), se, p_value, n)
