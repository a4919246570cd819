import choix
import numpy as np
import pytest
from scipy.optimize import minimize

from evaluation import bradley_terry_leaderboard, fit_bradley_terry

OUTCOMES = np.array(["win", "loss", "tie"])


def simulate_davidson(rng, theta, nu, n_votes, votes_per_prompt=1):
    """Votes drawn from the Davidson model written directly in the paper's form."""
    k = len(theta)
    a = rng.integers(0, k, size=n_votes)
    b = (a + rng.integers(1, k, size=n_votes)) % k
    p_a, p_b = np.exp(theta[a]), np.exp(theta[b])
    tie = nu * np.sqrt(p_a * p_b)
    denominator = p_a + p_b + tie
    u = rng.random(n_votes) * denominator
    kind = np.where(u < p_a, 0, np.where(u < p_a + p_b, 1, 2))
    groups = (np.arange(n_votes) // votes_per_prompt).tolist()
    return a.tolist(), b.tolist(), OUTCOMES[kind].tolist(), groups


def reference_negative_log_likelihood(a, b, outcomes, k):
    """The Davidson NLL in the paper's form; parameters (theta_1..theta_{k-1}, log nu)."""
    a, b, outcomes = np.asarray(a), np.asarray(b), np.asarray(outcomes)

    def negative_log_likelihood(params):
        theta = np.concatenate([[0.0], params[: k - 1]])
        nu = np.exp(params[k - 1])
        p_a, p_b = np.exp(theta[a]), np.exp(theta[b])
        tie = nu * np.sqrt(p_a * p_b)
        numerator = np.where(outcomes == "win", p_a, np.where(outcomes == "loss", p_b, tie))
        return -np.sum(np.log(numerator / (p_a + p_b + tie)))

    return negative_log_likelihood


def reference_fit(a, b, outcomes, k):
    """Independent float64 maximum likelihood: theta_0 fixed at 0, scipy on the plain NLL."""
    negative_log_likelihood = reference_negative_log_likelihood(a, b, outcomes, k)
    # Finite-difference gradients limit the precision to about 1e-5 at the optimum.
    result = minimize(negative_log_likelihood, np.zeros(k), method="BFGS", options={"gtol": 1e-6})
    assert np.max(np.abs(result.jac)) < 1e-3
    return np.concatenate([[0.0], result.x[: k - 1]]), float(np.exp(result.x[k - 1]))


def in_label_order(fit, k):
    return np.array([fit.scores[fit.items.index(i)] for i in range(k)])


def test_davidson_fit_matches_an_independent_maximum_likelihood_reference():
    theta = np.array([0.0, 0.8, -0.4, 0.3, -1.1])
    a, b, outcomes, _ = simulate_davidson(np.random.default_rng(0), theta, 0.6, 3000)
    fit = fit_bradley_terry(a, b, outcomes, l2=0.0, reference=0)
    expected_theta, expected_nu = reference_fit(a, b, outcomes, len(theta))
    assert fit.converged
    np.testing.assert_allclose(in_label_order(fit, 5), expected_theta, atol=1e-4)
    assert fit.nu == pytest.approx(expected_nu, rel=1e-4)


def test_davidson_fit_recovers_the_planted_strengths_and_tie_parameter():
    theta = np.array([0.0, 0.8, -0.4, 0.3, -1.1])
    a, b, outcomes, _ = simulate_davidson(np.random.default_rng(1), theta, 0.6, 6000)
    fit = fit_bradley_terry(a, b, outcomes, reference=0)
    np.testing.assert_allclose(in_label_order(fit, 5), theta, atol=0.12)
    assert fit.nu == pytest.approx(0.6, abs=0.06)
    assert fit.reference == 0


def test_default_scores_have_mean_zero_and_differ_from_the_reference_ones_by_a_shift():
    theta = np.array([0.0, 0.8, -0.4])
    a, b, outcomes, _ = simulate_davidson(np.random.default_rng(2), theta, 0.3, 500)
    centred = fit_bradley_terry(a, b, outcomes)
    anchored = fit_bradley_terry(a, b, outcomes, reference=2)
    assert centred.scores.mean() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(
        anchored.scores, centred.scores - centred.scores[centred.items.index(2)], atol=1e-12
    )
    assert centred.nu == pytest.approx(anchored.nu)


def test_without_ties_the_fit_is_bradley_terry_and_matches_choix():
    theta = np.array([0.5, -0.2, 0.0, 1.0, -1.3, 0.4])
    a, b, outcomes, _ = simulate_davidson(np.random.default_rng(3), theta, 0.0, 600)
    assert "tie" not in outcomes
    pairs = [(x, y) if o == "win" else (y, x) for x, y, o in zip(a, b, outcomes, strict=True)]

    fit = fit_bradley_terry(a, b, outcomes, l2=0.0)
    assert fit.nu == 0.0
    mle = choix.ilsr_pairwise(6, pairs, alpha=0.0, tol=1e-10, max_iter=1000)
    np.testing.assert_allclose(in_label_order(fit, 6), mle - mle.mean(), atol=1e-6)

    # choix penalises alpha * sum(theta^2); ours is l2 / 2 * sum(theta^2).
    penalised = fit_bradley_terry(a, b, outcomes, l2=2.0)
    reference = choix.opt_pairwise(6, pairs, alpha=1.0, tol=1e-10)
    np.testing.assert_allclose(
        in_label_order(penalised, 6), reference - reference.mean(), atol=1e-5
    )


def test_model_probabilities_follow_davidson():
    fit = fit_bradley_terry(["x", "x", "y"], ["y", "y", "x"], ["win", "tie", "loss"])
    first, second, tie = fit.win_probability("x", "y")
    p_x, p_y = np.exp(fit.scores[0]), np.exp(fit.scores[1])
    denominator = p_x + p_y + fit.nu * np.sqrt(p_x * p_y)
    assert (first, second, tie) == pytest.approx(
        (p_x / denominator, p_y / denominator, fit.nu * np.sqrt(p_x * p_y) / denominator)
    )


def test_an_item_that_never_wins_gets_a_finite_low_score_and_is_flagged_separated():
    a = ["good"] * 30 + ["ok"] * 30
    b = ["ok"] * 30 + ["never"] * 30
    outcomes = ["win"] * 20 + ["loss"] * 10 + ["win"] * 30
    board = bradley_terry_leaderboard(a, b, outcomes, list(range(60)), n_resamples=50, min_votes=0)
    rows = {row.item: row for row in board.rows}
    assert board.fit.converged
    assert np.all(np.isfinite(board.fit.scores))
    assert rows["never"].separated and rows["never"].score < rows["ok"].score - 2
    assert not rows["good"].separated and not rows["ok"].separated
    assert [row.item for row in board.rows] == ["good", "ok", "never"]
    assert board.fit.separated == ("never",)


def test_plain_maximum_likelihood_names_the_items_whose_strength_does_not_exist():
    a, b = ["x", "y", "y", "z"], ["y", "x", "z", "x"]
    # z never wins nor ties: its maximum-likelihood strength is minus infinity.
    fit = fit_bradley_terry(a, b, ["win", "win", "win", "loss"], l2=0.0)
    assert fit.separated == ("z",)
    tied = fit_bradley_terry(a, b, ["win", "win", "tie", "loss"], l2=0.0)
    assert tied.separated == ()
    assert tied.converged and np.all(np.isfinite(tied.scores))


def test_plain_maximum_likelihood_refuses_disconnected_items():
    with pytest.raises(ValueError, match="do not connect"):
        fit_bradley_terry(["a", "a", "c", "c"], ["b", "b", "d", "d"], ["win", "loss"] * 2, l2=0.0)


def test_leaderboard_intervals_cover_the_planted_strengths_and_count_votes():
    theta = np.array([0.0, 0.9, -0.6, 0.3])
    a, b, outcomes, groups = simulate_davidson(np.random.default_rng(4), theta, 0.5, 1200, 4)
    board = bradley_terry_leaderboard(
        a, b, outcomes, groups, reference=0, n_resamples=200, min_votes=700, seed=3
    )
    rows = {row.item: row for row in board.rows}
    assert [row.item for row in board.rows] == [1, 3, 0, 2]
    assert (rows[0].ci_low, rows[0].ci_high) == (0.0, 0.0)
    for item in (1, 2, 3):
        assert rows[item].ci_low < theta[item] < rows[item].ci_high
        assert rows[item].ci_low < rows[item].score < rows[item].ci_high
    assert sum(row.votes for row in board.rows) == 2 * 1200
    for row in board.rows:
        assert row.votes == row.wins + row.losses + row.ties
        assert row.provisional == (row.votes < 700)
    assert board.n_prompts == 300


def test_bootstrap_intervals_match_the_fisher_information_standard_errors():
    theta = np.array([0.0, 0.6, -0.5])
    a, b, outcomes, groups = simulate_davidson(np.random.default_rng(6), theta, 0.5, 2400)
    board = bradley_terry_leaderboard(a, b, outcomes, groups, reference=0, n_resamples=400)
    # Observed information: the finite-difference Hessian of the reference NLL at its optimum.
    nll = reference_negative_log_likelihood(a, b, outcomes, 3)
    estimate, nu = reference_fit(a, b, outcomes, 3)
    x, step = np.array([estimate[1], estimate[2], np.log(nu)]), 1e-3
    hessian = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            e_i, e_j = np.eye(3)[i] * step, np.eye(3)[j] * step
            hessian[i, j] = (
                nll(x + e_i + e_j) - nll(x + e_i - e_j) - nll(x - e_i + e_j) + nll(x - e_i - e_j)
            ) / (4 * step * step)
    standard_errors = np.sqrt(np.diag(np.linalg.inv(hessian)))
    rows = {row.item: row for row in board.rows}
    for item in (1, 2):
        width = rows[item].ci_high - rows[item].ci_low
        assert width == pytest.approx(2 * 1.96 * standard_errors[item - 1], rel=0.15)


def test_four_times_the_votes_halves_the_leaderboard_interval():
    theta = np.array([0.0, 0.5])
    widths = []
    for n in (300, 1200):
        a, b, outcomes, groups = simulate_davidson(np.random.default_rng(n), theta, 0.4, n)
        board = bradley_terry_leaderboard(a, b, outcomes, groups, reference=0, n_resamples=200)
        row = next(row for row in board.rows if row.item == 1)
        widths.append(row.ci_high - row.ci_low)
    assert widths[0] / widths[1] == pytest.approx(2.0, rel=0.2)


@pytest.mark.parametrize(
    ("a", "b", "outcomes", "message"),
    [
        ([], [], [], "empty"),
        (["x"], ["y", "z"], ["win"], "item_b has 2"),
        (["x"], ["y"], ["won"], "'won'"),
        (["x"], ["x"], ["win"], "with itself"),
    ],
)
def test_bad_comparisons_raise_a_clear_value_error(a, b, outcomes, message):
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(a, b, outcomes)


def test_bad_options_raise_a_clear_value_error():
    with pytest.raises(ValueError, match="l2"):
        fit_bradley_terry(["x"], ["y"], ["win"], l2=-1.0)
    with pytest.raises(ValueError, match="reference"):
        fit_bradley_terry(["x"], ["y"], ["win"], reference="z")
    with pytest.raises(ValueError, match="groups has 0"):
        bradley_terry_leaderboard(["x"], ["y"], ["win"], [])
