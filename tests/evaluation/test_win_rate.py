import numpy as np
import pytest

from evaluation import Outcome, win_rate


def simulate_prompts(rng, n_prompts, votes_per_prompt, mean_p):
    """Votes on prompts of varying difficulty: A wins a prompt's votes with probability p_g."""
    p = mean_p + rng.uniform(-0.3, 0.3, size=n_prompts)
    outcomes, groups = [], []
    for g in range(n_prompts):
        for _ in range(votes_per_prompt):
            u = rng.random()
            if u < 0.1:
                outcomes.append("tie")
            else:
                outcomes.append("win" if rng.random() < p[g] else "loss")
            groups.append(f"prompt-{g}")
    # Expected score per vote: 0.1 * 0.5 + 0.9 * p_g, averaged over prompts (E[p_g] = mean_p).
    return outcomes, groups, 0.05 + 0.9 * mean_p


def test_win_rate_counts_ties_as_half_a_win():
    result = win_rate(["win", "win", "tie", "loss"], [1, 1, 2, 3], n_resamples=50)
    assert result.estimate == pytest.approx((2 + 0.5) / 4)
    assert (result.wins, result.losses, result.ties, result.n, result.n_prompts) == (2, 1, 1, 4, 3)
    assert result.ci_low <= result.estimate <= result.ci_high


def test_win_rate_accepts_outcome_members():
    result = win_rate([Outcome.WIN, Outcome.LOSS], ["a", "b"], n_resamples=20)
    assert result.estimate == 0.5


def test_same_seed_gives_same_interval_and_other_seed_another():
    outcomes, groups, _ = simulate_prompts(np.random.default_rng(3), 40, 3, 0.6)
    first = win_rate(outcomes, groups, n_resamples=500, seed=7)
    again = win_rate(outcomes, groups, n_resamples=500, seed=7)
    other = win_rate(outcomes, groups, n_resamples=500, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_bootstrap_interval_matches_the_normal_approximation_for_independent_votes():
    rng = np.random.default_rng(11)
    outcomes = rng.choice(["win", "loss"], size=1000, p=[0.6, 0.4]).tolist()
    result = win_rate(outcomes, list(range(1000)), n_resamples=3000, seed=1)
    half_width = 1.96 * np.sqrt(result.estimate * (1 - result.estimate) / 1000)
    assert result.ci_high - result.ci_low == pytest.approx(2 * half_width, rel=0.1)


def reference_prompt_bootstrap(outcomes, groups, n_resamples, seed):
    """Draw the prompts with replacement, pool their votes, take the win-rate; percentiles."""
    score = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    by_prompt = {}
    for outcome, group in zip(outcomes, groups, strict=True):
        by_prompt.setdefault(group, []).append(score[outcome])
    sums = np.array([sum(votes) for votes in by_prompt.values()])
    sizes = np.array([len(votes) for votes in by_prompt.values()])
    drawn = np.random.default_rng(seed).integers(0, len(sums), size=(n_resamples, len(sums)))
    rates = sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1)
    return np.quantile(rates, [0.025, 0.975])


@pytest.mark.parametrize(
    ("n_prompts", "votes_per_prompt"),
    [
        # Many kinds of prompt (score sum, vote count): prompts are drawn one by one.
        (40, 6),
        # One vote per prompt, three kinds: counts per kind are drawn as a multinomial.
        (400, 1),
    ],
)
def test_interval_agrees_with_a_plain_prompt_bootstrap(n_prompts, votes_per_prompt):
    outcomes, groups, _ = simulate_prompts(
        np.random.default_rng(n_prompts), n_prompts, votes_per_prompt, 0.6
    )
    result = win_rate(outcomes, groups, n_resamples=4000, seed=1)
    low, high = reference_prompt_bootstrap(outcomes, groups, 4000, seed=2)
    # Two independent Monte-Carlo estimates of the same percentiles.
    assert result.ci_low == pytest.approx(low, abs=0.005)
    assert result.ci_high == pytest.approx(high, abs=0.005)


def test_interval_covers_the_true_win_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    covered = 0
    trials = 200
    for trial in range(trials):
        outcomes, groups, true_value = simulate_prompts(rng, 60, 5, 0.6)
        result = win_rate(outcomes, groups, n_resamples=400, seed=trial)
        covered += result.ci_low <= true_value <= result.ci_high
    # 95% nominal; the binomial standard error over 200 trials is 1.5 points.
    assert 0.89 <= covered / trials <= 0.99


def test_resampling_prompts_widens_the_interval_when_votes_on_a_prompt_agree():
    rng = np.random.default_rng(5)
    # Each prompt's five votes are identical: five votes carry one prompt's information.
    per_prompt = rng.choice(["win", "loss"], size=100, p=[0.6, 0.4])
    outcomes = np.repeat(per_prompt, 5).tolist()
    groups = np.repeat(np.arange(100), 5).tolist()
    by_prompt = win_rate(outcomes, groups, n_resamples=2000, seed=0)
    by_vote = win_rate(outcomes, list(range(500)), n_resamples=2000, seed=0)
    width_ratio = (by_prompt.ci_high - by_prompt.ci_low) / (by_vote.ci_high - by_vote.ci_low)
    assert width_ratio == pytest.approx(np.sqrt(5), rel=0.15)


def test_all_wins_give_a_degenerate_interval_at_one():
    result = win_rate(["win"] * 10, list(range(10)), n_resamples=100)
    assert (result.estimate, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("outcomes", "groups", "kwargs", "message"),
    [
        ([], [], {}, "empty"),
        (["win", "loss"], [1], {}, "groups has 1"),
        (["win", "draw"], [1, 2], {}, "'draw'"),
        (["win", None], [1, 2], {}, "None"),
        (["win"], [1], {"n_resamples": 0}, "n_resamples"),
        (["win"], [1], {"confidence": 1.0}, "confidence"),
    ],
)
def test_bad_input_raises_a_clear_value_error(outcomes, groups, kwargs, message):
    with pytest.raises(ValueError, match=message):
        win_rate(outcomes, groups, **kwargs)
