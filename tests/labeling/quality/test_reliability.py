import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene
from scipy import stats

from labeling.quality import Thresholds, compute_quality
from labeling.quality.reliability import annotator_table, fit_dawid_skene, soft_labels
from labeling.quality.votes import encode_votes
from tests.labeling.quality.crowd import ALWAYS_LEFT, BAD, FAST, RANDOM, simulate_crowd
from tests.labeling.quality.hand_example import hand_votes


@pytest.fixture(scope="module")
def crowd() -> pd.DataFrame:
    return simulate_crowd(seed=7)


@pytest.fixture(scope="module")
def crowd_report(crowd):
    return compute_quality(crowd)


def test_hand_example_per_annotator_figures():
    votes = encode_votes(hand_votes())
    table = annotator_table(votes, fit_dawid_skene(votes), Thresholds()).set_index("annotator")
    x, y, z = table.loc["x"], table.loc["y"], table.loc["z"]
    # x: A (left A), A (left A), B (left B): three decisive votes, all on the left.
    assert (x.decisive_votes, x.left_choices, x.left_share) == (3, 3, 1.0)
    assert x.left_p_value == pytest.approx(0.25)  # 2 * 0.5**3
    # y: A (left B), B (left B), B (left A): one of three on the left.
    assert y.left_share == pytest.approx(1 / 3)
    # z: A, tie, tie; tie rate 2/3; seconds 1, 2, 3: median 2.
    assert (z.decisive_votes, z.tie_rate, z.median_seconds) == (1, pytest.approx(2 / 3), 2.0)
    # Reading floor: (400 + 200) / 40 = 15 s. x: 20 s is not fast; z: all three are.
    assert (x.fast_votes, z.fast_votes, z.fast_share) == (0, 3, 1.0)
    # y has one vote without a time: two timed votes, median of 40 and 60.
    assert (y.timed_votes, y.median_seconds) == (2, 50.0)
    # Leave-one-out majority: x has one (c1 A agree, c2 B disagree); z has c1 A, c3 B.
    assert (x.consensus_votes, x.consensus_agreement) == (2, 0.5)
    assert (z.consensus_votes, z.consensus_agreement) == (2, 0.5)
    # Gold: c1 is gold A, everyone chose A.
    assert (x.gold_votes, x.gold_correct, x.gold_accuracy) == (1, 1, 1.0)
    assert not table["flagged"].any()  # nobody has min_votes (20) votes


# crowd-kit 1.4.2 passes keywords that pandas 3 deprecates; our own call silences them too.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dawid_skene_figures_equal_crowd_kit_called_directly(crowd):
    votes = encode_votes(crowd)
    fit = fit_dawid_skene(votes)
    direct = DawidSkene(n_iter=100, tol=1e-5).fit(
        pd.DataFrame(
            {"task": crowd["comparison"], "worker": crowd["annotator"], "label": crowd["choice"]}
        )
    )
    labels = ["A", "B", "tie", "both_bad"]
    posterior = direct.probas_.reindex(columns=labels).fillna(0.0).loc[votes.comparison_ids]
    np.testing.assert_allclose(fit.posterior, posterior.to_numpy(), atol=1e-9)
    priors = direct.priors_.reindex(labels).to_numpy()
    for code, who in enumerate(votes.annotator_ids):
        errors = direct.errors_.loc[who]
        right = sum(priors[k] * errors.loc[c, c] for k, c in enumerate(labels) if c in errors.index)
        assert fit.reliability[code] == pytest.approx(right, abs=1e-9)


def test_simulated_crowd_flags_exactly_the_bad_annotators_with_their_reasons(crowd_report):
    assert sorted(crowd_report.flagged) == sorted(BAD)
    reasons = crowd_report.annotators.set_index("annotator")["reasons"]
    assert any("on the left in 100%" in r for r in reasons[ALWAYS_LEFT])
    assert any("faster than the time needed to read" in r for r in reasons[FAST])
    assert any("other annotators' majority" in r for r in reasons[RANDOM])
    # The fast clicker votes like an honest annotator: speed is its only reason.
    assert len(reasons[FAST]) == 1


def test_flags_follow_the_thresholds(crowd):
    lenient = Thresholds(
        position_max_p_value=0.0,
        max_fast_share=1.0,
        min_consensus_agreement=0.0,
        min_reliability=0.0,
        min_gold_accuracy=0.0,
    )
    assert compute_quality(crowd, lenient).flagged == []
    strict = Thresholds(min_votes=10_000)
    flagged = compute_quality(crowd, strict).annotators.set_index("annotator")
    # Only gold can flag with too few votes: the random annotator's gold accuracy.
    assert list(flagged.index[flagged["flagged"]]) == [RANDOM]


def test_gold_accuracy_has_a_wilson_interval(crowd_report):
    table = crowd_report.annotators
    for row in table.itertuples():
        ci = stats.binomtest(row.gold_correct, row.gold_votes).proportion_ci(method="wilson")
        assert (row.gold_ci_low, row.gold_ci_high) == pytest.approx((ci.low, ci.high))
        assert row.gold_accuracy == pytest.approx(row.gold_correct / row.gold_votes)


def test_soft_labels_follow_the_posterior(crowd):
    votes = encode_votes(crowd)
    fit = fit_dawid_skene(votes)
    labels = soft_labels(votes, fit)
    p = fit.posterior
    np.testing.assert_allclose(labels["weight"], 1 - p[:, 3])
    np.testing.assert_allclose(labels["p_chosen"], (p[:, 0] + p[:, 2] / 2) / p[:, :3].sum(axis=1))
    # Where four or more of five votes said A, A almost surely beats B.
    a_votes = crowd[crowd["choice"] == "A"].groupby("comparison").size()
    clear = a_votes[a_votes >= 4].index
    assert (labels.set_index("comparison").loc[clear, "p_chosen"] > 0.9).all()
    assert set(labels["label"]) <= {"A", "B", "tie", "both_bad"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_votes": 0}, "at least 1"),
        ({"max_fast_share": 1.5}, "share and must be at most 1"),
        ({"reading_chars_per_second": 0}, "more than 0"),
        ({"position_min_deviation": 0.7}, "at most 0.5"),
        ({"min_reliability": -0.1}, "at least 0"),
        ({"max_tie_rate": float("nan")}, "finite"),
        ({"min_gold_votes": "5"}, "must be a number"),
    ],
)
def test_bad_thresholds_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Thresholds(**kwargs)
