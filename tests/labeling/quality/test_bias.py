import numpy as np
import pandas as pd
import pytest
from scipy import stats

from labeling.quality import compute_quality
from labeling.quality.bias import length_bias, model_win_rates, position_bias
from labeling.quality.votes import encode_votes
from tests.labeling.quality.hand_example import hand_votes


def test_position_bias_in_the_hand_example():
    # Decisive votes: 7; left chosen: c1 x, c1 z, c2 x, c2 y, c3 x = 5.
    result = position_bias(encode_votes(hand_votes()))
    assert (result.successes, result.trials) == (5, 7)
    assert result.p_value == pytest.approx(stats.binomtest(5, 7, 0.5).pvalue)
    ci = stats.binomtest(5, 7).proportion_ci(method="wilson")
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high))


def length_crowd(seed: int, effect: float, n: int = 2000) -> pd.DataFrame:
    """Votes where the log-odds of choosing A grow by ``effect`` per sd of length difference."""
    rng = np.random.default_rng(seed)
    len_a = rng.integers(100, 2000, n)
    len_b = rng.integers(100, 2000, n)
    z = (len_a - len_b) / np.std(len_a - len_b)
    chose_a = rng.random(n) < 1 / (1 + np.exp(-effect * z))
    return pd.DataFrame(
        {
            "comparison": np.arange(n),
            "annotator": rng.integers(0, 20, n),
            "choice": np.where(chose_a, "A", "B"),
            "left_side": rng.choice(["A", "B"], n),
            "seconds": 30.0,
            "len_a": len_a,
            "len_b": len_b,
            "model_a": "m",
            "model_b": "n",
            "round": 1,
            "gold": None,
        }
    )


def test_length_bias_finds_a_crowd_that_rewards_length():
    result = length_bias(encode_votes(length_crowd(seed=1, effect=1.0)))
    assert result.fit is not None
    assert result.fit.slope == pytest.approx(1.0, abs=0.15)
    assert result.fit.slope_p_value < 1e-10
    assert result.odds_ratio_per_sd == pytest.approx(np.exp(result.fit.slope))
    assert result.longer_chosen.share > 0.6
    assert result.longer_chosen.p_value < 1e-10


def test_length_bias_is_near_zero_when_length_does_not_matter():
    result = length_bias(encode_votes(length_crowd(seed=2, effect=0.0)))
    assert result.fit is not None
    assert abs(result.fit.slope) < 0.15
    assert result.longer_chosen.share == pytest.approx(0.5, abs=0.05)


def test_length_bias_counts_longer_chosen_by_hand():
    # len_a 400 > len_b 200 everywhere: decisive votes choosing A are 4 of 7.
    result = length_bias(encode_votes(hand_votes()))
    assert (result.longer_chosen.successes, result.longer_chosen.trials) == (4, 7)
    assert result.fit is None  # every length difference is the same


def test_model_win_rates_by_hand():
    frame = hand_votes()
    frame.loc[frame["comparison"] == "c3", ["model_a", "model_b"]] = ["m2", "m1"]
    frame.loc[frame["comparison"] == "c4", ["model_a", "model_b"]] = ["m1", "m1"]  # left out
    table = model_win_rates(encode_votes(frame)).set_index("model")
    # m1 is A in c1, c2 (A,A,A,A,B) and B in c3 (B,B,tie): 6 wins, 1 loss, 1 tie.
    assert table.loc["m1", ["appearances", "wins", "losses", "ties", "both_bad"]].tolist() == [
        8,
        6,
        1,
        1,
        0,
    ]
    assert table.loc["m2", ["wins", "losses"]].tolist() == [1, 6]
    assert table.loc["m1", "win_rate"] == pytest.approx(6 / 7)
    ci = stats.binomtest(6, 7).proportion_ci(method="wilson")
    assert table.loc["m1", ["win_ci_low", "win_ci_high"]].tolist() == pytest.approx(
        [ci.low, ci.high]
    )
    assert list(table.index) == ["m1", "m2"]  # best first


def test_model_win_rates_are_empty_without_model_names():
    frame = hand_votes().assign(model_a=None, model_b="")
    table = model_win_rates(encode_votes(frame))
    assert table.empty
    assert "win_rate" in table.columns
    assert compute_quality(frame).project.model_win_rates.empty
