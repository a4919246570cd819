import pytest

from evaluation import GateRule, evaluate_gate, length_controlled_win_rate, win_rate


def evaluation(wins, losses, ties, lengths_a=None, lengths_b=None):
    outcomes = ["win"] * wins + ["loss"] * losses + ["tie"] * ties
    groups = list(range(len(outcomes)))
    rate = win_rate(outcomes, groups, n_resamples=500)
    lc = None
    if lengths_a is not None:
        lc = length_controlled_win_rate(outcomes, groups, lengths_a, lengths_b, n_resamples=100)
    return rate, lc


def test_a_clear_winner_of_equal_length_passes():
    rate, lc = evaluation(160, 30, 10, [100] * 200, [100] * 200)
    decision = evaluate_gate(GateRule(min_votes=100), rate, lc)
    assert decision.passed
    assert decision.reasons == []


def test_an_interval_reaching_below_one_half_is_refused_with_its_bound_named():
    rate, lc = evaluation(53, 47, 0, [100] * 100, [100] * 100)
    decision = evaluate_gate(GateRule(), rate, lc)
    assert not decision.passed
    assert decision.reasons == [
        f"the lower end of the 95% interval of the win-rate, {rate.ci_low:.3f}, is not above 0.5"
    ]


def test_wins_that_come_from_longer_answers_fail_the_length_controlled_condition():
    # A wins exactly when its answer is longer; at equal length it would win half the time.
    wins, losses = 150, 50
    lengths_a = [150 + k % 50 for k in range(wins)] + [50 + k % 50 for k in range(losses)]
    lengths_b = [100] * (wins + losses)
    # Ties at equal length anchor the equal-length rate at one half.
    lengths_a += [100] * 50
    lengths_b += [100] * 50
    rate, lc = evaluation(wins, losses, 50, lengths_a, lengths_b)
    assert lc is not None and lc.estimate < 0.5 < rate.ci_low
    decision = evaluate_gate(GateRule(min_ci_low=0.5, min_lc_win_rate=0.5), rate, lc)
    assert not decision.passed
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith(
        f"the length-controlled win-rate, {lc.estimate:.3f}, is not above 0.5"
    )


def test_every_failed_condition_gives_its_own_reason():
    rate, _ = evaluation(10, 12, 3)
    rule = GateRule(min_ci_low=0.5, min_lc_win_rate=0.5, min_win_rate=0.55, min_votes=50)
    decision = evaluate_gate(rule, rate, None)
    assert not decision.passed
    assert decision.reasons == [
        "only 25 votes are in; the rule needs at least 50",
        f"the lower end of the 95% interval of the win-rate, {rate.ci_low:.3f}, is not above 0.5",
        "the win-rate, 0.460, is not above 0.55",
        "no length-controlled win-rate was computed, and the rule needs one above 0.5",
    ]


def test_switched_off_conditions_are_not_checked():
    rate, _ = evaluation(10, 12, 3)
    decision = evaluate_gate(GateRule(min_ci_low=None, min_lc_win_rate=None), rate)
    assert decision.passed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_ci_low": 1.5}, "min_ci_low"),
        ({"min_lc_win_rate": -0.1}, "min_lc_win_rate"),
        ({"min_votes": -1}, "min_votes"),
    ],
)
def test_an_impossible_rule_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GateRule(**kwargs)
