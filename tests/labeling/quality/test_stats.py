import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from labeling.quality.stats import fit_logistic, proportion, wilson_interval


def test_wilson_interval_by_hand_and_against_scipy():
    # 8 of 10: centre (0.8 + z²/20) / (1 + z²/10), half-width z·sqrt(0.016 + z²/400) / (1 + z²/10)
    low, high = wilson_interval(8, 10)
    assert (float(low), float(high)) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)
    for k, n in [(0, 5), (5, 5), (3, 7), (40, 120), (999, 1000)]:
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        low, high = wilson_interval(k, n)
        assert (float(low), float(high)) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_interval_is_nan_without_trials():
    low, high = wilson_interval(np.array([0, 1]), np.array([0, 2]))
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert np.isfinite(low[1])


def test_proportion_tests_against_half_with_scipy():
    result = proportion(30, 40)
    assert result.share == 0.75
    assert result.p_value == pytest.approx(stats.binomtest(30, 40, 0.5).pvalue)
    empty = proportion(0, 0)
    assert empty.share is None and empty.p_value is None
    with pytest.raises(ValueError, match="successes"):
        proportion(5, 3)


def test_logistic_fit_equals_scikit_learn_without_penalty():
    rng = np.random.default_rng(5)
    x = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-(0.3 + 0.8 * x)))).astype(float)
    fit = fit_logistic(x, y)
    assert fit is not None
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(x[:, None], y)
    assert fit.slope == pytest.approx(reference.coef_[0, 0], abs=1e-6)
    assert fit.intercept == pytest.approx(reference.intercept_[0], abs=1e-6)
    assert fit.slope_p_value < 1e-10
    # Standard error: the inverse observed information, here recomputed directly.
    p = 1 / (1 + np.exp(-(fit.intercept + fit.slope * x)))
    design = np.column_stack([np.ones_like(x), x])
    information = design.T @ (design * (p * (1 - p))[:, None])
    assert fit.slope_se == pytest.approx(np.sqrt(np.linalg.inv(information)[1, 1]))


def test_logistic_fit_does_not_exist_under_separation_or_one_class():
    x = np.arange(10.0)
    assert fit_logistic(x, (x > 4).astype(float)) is None
    assert fit_logistic(x, np.ones(10)) is None
    assert fit_logistic(np.ones(10), (x > 4).astype(float)) is None
    with pytest.raises(ValueError, match="same length"):
        fit_logistic(x, x[:5])
