import itertools

import krippendorff
import numpy as np
import pandas as pd
import pytest

from labeling.quality.agreement import (
    agreement,
    leave_one_out_consensus,
    pairwise_agreement,
)
from labeling.quality.votes import CHOICES, encode_votes
from tests.labeling.quality.hand_example import hand_votes


def reliability_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Annotators x comparisons, choice codes, NaN where no vote: the package's own input."""
    codes = frame.assign(code=frame["choice"].map(CHOICES.index))
    return codes.pivot(index="annotator", columns="comparison", values="code").to_numpy(float)


def test_hand_example_alpha_percent_agreement_and_distribution():
    result = agreement(encode_votes(hand_votes()))
    # Coincidences: o_AA=3, o_AB=o_BA=1, o_BB=1, o_Btie=o_tieB=1; n=8, n_A=4, n_B=3, n_tie=1.
    # alpha = 1 - (n - 1) * 4 / (64 - 16 - 9 - 1) = 1 - 28/38.
    assert result.alpha == pytest.approx(10 / 38)
    # Vote pairs: c1 3 of 3 agree, c2 0 of 1, c3 1 of 3.
    assert result.percent_agreement == pytest.approx(4 / 7)
    assert result.vote_pairs == 7
    assert result.votes_per_comparison == {1: 1, 2: 1, 3: 2}
    assert (result.unanimous, result.majority, result.split) == (1, 1, 1)
    assert result.pairable_comparisons == 3


def test_project_alpha_equals_the_package_on_the_reliability_matrix():
    rng = np.random.default_rng(3)
    rows = [
        (c, a, CHOICES[rng.choice(4, p=[0.5, 0.3, 0.15, 0.05])])
        for c in range(60)
        for a in rng.choice(8, size=rng.integers(1, 5), replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["comparison", "annotator", "choice"])
    full = frame.assign(
        left_side="A", seconds=1.0, len_a=1, len_b=1, model_a="", model_b="", round=1, gold=None
    )
    expected = krippendorff.alpha(
        reliability_data=reliability_matrix(frame),
        value_domain=[0, 1, 2, 3],
        level_of_measurement="nominal",
    )
    assert agreement(encode_votes(full)).alpha == pytest.approx(expected, abs=1e-12)


def test_pairs_in_the_hand_example():
    pairs = pairwise_agreement(encode_votes(hand_votes())).set_index(["annotator_a", "annotator_b"])
    assert pairs.loc[("x", "y"), "overlap"] == 3
    assert pairs.loc[("x", "y"), "percent_agreement"] == pytest.approx(2 / 3)
    # values A,A,A,B,B,B; one disagreeing unit: 1 - 5 * 2 / (36 - 18)
    assert pairs.loc[("x", "y"), "alpha"] == pytest.approx(1 - 10 / 18)
    for pair in [("x", "z"), ("y", "z")]:
        assert pairs.loc[pair, "overlap"] == 2
        assert pairs.loc[pair, "percent_agreement"] == pytest.approx(0.5)
        assert pairs.loc[pair, "alpha"] == pytest.approx(1 - 3 * 2 / 10)
    assert len(pairs) == 3


def test_pair_alpha_equals_the_package_for_every_pair():
    rng = np.random.default_rng(11)
    rows = [
        (c, a, CHOICES[rng.choice(4, p=[0.45, 0.35, 0.15, 0.05])])
        for c in range(80)
        for a in rng.choice(6, size=rng.integers(1, 6), replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["comparison", "annotator", "choice"])
    full = frame.assign(
        left_side="B", seconds=1.0, len_a=1, len_b=1, model_a="", model_b="", round=1, gold=None
    )
    pairs = pairwise_agreement(encode_votes(full)).set_index(["annotator_a", "annotator_b"])
    matrix = pd.DataFrame(reliability_matrix(frame), index=sorted(frame["annotator"].unique()))
    checked = 0
    for a, b in itertools.combinations(matrix.index, 2):
        both = matrix.loc[[a, b]].dropna(axis=1)
        if both.shape[1] == 0:
            assert (a, b) not in pairs.index
            continue
        assert pairs.loc[(a, b), "overlap"] == both.shape[1]
        agree = (both.iloc[0] == both.iloc[1]).mean()
        assert pairs.loc[(a, b), "percent_agreement"] == pytest.approx(agree)
        if both.stack().nunique() > 1:
            expected = krippendorff.alpha(
                reliability_data=both.to_numpy(),
                value_domain=[0, 1, 2, 3],
                level_of_measurement="nominal",
            )
            assert pairs.loc[(a, b), "alpha"] == pytest.approx(expected, abs=1e-12)
            checked += 1
    assert checked >= 10


def test_leave_one_out_consensus_in_the_hand_example():
    votes = encode_votes(hand_votes())
    consensus = leave_one_out_consensus(votes)
    by_vote = {
        (votes.comparison_ids[c], votes.annotator_ids[a]): (CHOICES[k] if k >= 0 else None)
        for c, a, k in zip(votes.comparison, votes.annotator, consensus, strict=True)
    }
    assert by_vote == {
        ("c1", "x"): "A",
        ("c1", "y"): "A",
        ("c1", "z"): "A",
        ("c2", "x"): "B",
        ("c2", "y"): "A",
        ("c3", "x"): None,  # the others split B / tie
        ("c3", "y"): None,
        ("c3", "z"): "B",
        ("c4", "z"): None,  # nobody else voted
    }


def test_alpha_is_none_without_disagreement_information():
    frame = hand_votes()
    frame["choice"] = "A"
    assert agreement(encode_votes(frame)).alpha is None
    single = hand_votes().drop_duplicates("comparison")
    result = agreement(encode_votes(single))
    assert result.alpha is None
    assert result.percent_agreement is None
