import numpy as np
import pytest

from evaluation import length_controlled_win_rate


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def simulate_length_bias(rng, n_prompts, equal_length_rate, slope, a_is_longer_by):
    """Votes whose log-odds rise with A's length lead: logit P = logit(rate) + slope * d."""
    length_a = rng.normal(200 + a_is_longer_by, 40, size=n_prompts).clip(1)
    length_b = rng.normal(200, 40, size=n_prompts).clip(1)
    d = (length_a - length_b) / np.std(length_a - length_b)
    p = sigmoid(np.log(equal_length_rate / (1 - equal_length_rate)) + slope * d)
    u = rng.random(n_prompts)
    # One vote in ten is a tie; the rest are wins with probability p.
    outcomes = np.where(u < 0.1, "tie", np.where(rng.random(n_prompts) < p, "win", "loss"))
    return outcomes.tolist(), list(range(n_prompts)), length_a.tolist(), length_b.tolist()


def test_length_controlled_rate_recovers_the_equal_length_rate_under_a_planted_length_bias():
    # A writes longer answers and longer answers win more; at equal length A is no better.
    outcomes, groups, length_a, length_b = simulate_length_bias(
        np.random.default_rng(0), 3000, 0.5, 1.2, 60
    )
    result = length_controlled_win_rate(
        outcomes, groups, length_a, length_b, n_resamples=200, seed=1
    )
    assert result.raw_win_rate > 0.6
    assert result.estimate == pytest.approx(0.5, abs=0.03)
    assert result.ci_low < 0.5 < result.ci_high
    assert result.raw_win_rate > result.ci_high
    assert result.slope > 0.8
    assert result.length_difference_scale == pytest.approx(np.std(np.subtract(length_a, length_b)))


def test_without_a_length_effect_both_rates_agree():
    outcomes, groups, length_a, length_b = simulate_length_bias(
        np.random.default_rng(1), 2000, 0.65, 0.0, 0
    )
    result = length_controlled_win_rate(outcomes, groups, length_a, length_b, n_resamples=200)
    assert result.estimate == pytest.approx(result.raw_win_rate, abs=0.02)
    assert abs(result.slope) < 0.15
    assert result.ci_low < result.estimate < result.ci_high


def test_equal_lengths_reduce_to_the_raw_win_rate():
    outcomes = ["win", "win", "loss", "tie"] * 10
    result = length_controlled_win_rate(
        outcomes, list(range(40)), [50] * 40, [50] * 40, n_resamples=100
    )
    assert result.slope == 0.0
    assert result.estimate == pytest.approx(result.raw_win_rate, abs=1e-3)


def test_winning_every_comparison_stays_finite_and_near_one():
    result = length_controlled_win_rate(
        ["win"] * 30, list(range(30)), list(range(30)), [10] * 30, n_resamples=50
    )
    assert np.isfinite(result.intercept)
    assert result.estimate > 0.99


def test_bad_lengths_raise_a_clear_value_error():
    with pytest.raises(ValueError, match="length_b has 1"):
        length_controlled_win_rate(["win", "loss"], [1, 2], [3, 4], [5])
    with pytest.raises(ValueError, match="finite"):
        length_controlled_win_rate(["win"], [1], [float("nan")], [5])
    with pytest.raises(ValueError, match="empty"):
        length_controlled_win_rate([], [], [], [])


def test_a_constant_length_difference_is_refused_since_length_and_model_are_confounded():
    with pytest.raises(ValueError, match="always 10 longer"):
        length_controlled_win_rate(["win", "loss", "win"], [1, 2, 3], [20, 30, 40], [10, 20, 30])
