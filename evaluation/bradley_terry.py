"""Bradley-Terry strengths with ties (Davidson 1970) over any number of models, and a leaderboard.

Model: item ``i`` has strength ``p_i = exp(theta_i)``; in a comparison of ``i`` with ``j``

    P(i beats j) = p_i / D,   P(j beats i) = p_j / D,   P(tie) = nu sqrt(p_i p_j) / D,
    D = p_i + p_j + nu sqrt(p_i p_j),   nu >= 0.

Dividing through by ``sqrt(p_i p_j)`` with ``h = (theta_i - theta_j) / 2`` and ``lam = log nu``
turns the three probabilities into a softmax of ``(h, -h, lam)``, so the log-likelihood is a
linear term minus a log-sum-exp: concave in ``(theta, lam)``. Newton's method with a
backtracking line search therefore finds the maximum from any start.

Identifiability: only differences of ``theta`` enter the likelihood. The fit uses a Gaussian
prior ``-l2/2 (sum theta_i^2 + lam^2)`` (``l2 = 0.01`` by default, negligible against the
information of a few dozen votes), whose optimum has ``mean(theta) = 0``; the reported scores
keep that mean at 0 unless a ``reference`` item is named, in which case every score is shifted
so that the reference scores 0 (its interval is then [0, 0]). The prior keeps the strength of an
item that never won nor tied (or never lost nor tied) finite; such items are flagged
``separated``. Without any
tie in the data the maximum-likelihood ``nu`` is 0 and is fixed there, which is the plain
Bradley-Terry model.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from evaluation._data import (
    FloatArray,
    IntArray,
    check_bootstrap_arguments,
    check_same_length,
    group_codes,
    outcome_scores,
    resampled_group_counts,
)


@dataclass(frozen=True)
class _Cells:
    """Comparisons aggregated by unordered pair: pair ``c`` is ``(first[c], second[c])``."""

    first: IntArray
    second: IntArray
    cell: IntArray  # per comparison: 3 * pair + (0 first won, 1 second won, 2 tie)
    n_pairs: int


def _aggregate(a: IntArray, b: IntArray, scores: FloatArray) -> _Cells:
    first, second = np.minimum(a, b), np.maximum(a, b)
    pairs, pair_of = np.unique(np.stack([first, second], 1), axis=0, return_inverse=True)
    first_won = np.where(a == first, scores == 1.0, scores == 0.0)
    kind = np.where(scores == 0.5, 2, np.where(first_won, 0, 1))
    return _Cells(pairs[:, 0], pairs[:, 1], 3 * pair_of.ravel() + kind, len(pairs))


def _per_item(cells: _Cells, values: FloatArray, k: int, sign: float = -1.0) -> FloatArray:
    """Sum a per-pair quantity into items: ``+values`` to each first item, ``sign * values`` to
    each second one."""
    first = np.bincount(cells.first, weights=values, minlength=k)
    second = np.bincount(cells.second, weights=values, minlength=k)
    return np.asarray(first + sign * second, dtype=np.float64)


def _objective(
    x: FloatArray, cells: _Cells, counts: FloatArray, l2: float, fit_nu: bool
) -> tuple[float, FloatArray, FloatArray]:
    """Negative log-posterior, its gradient and Hessian in ``x = (theta, [lam])``.

    ``counts`` is ``(n_pairs, 3)``: first won, second won, tie. Per pair with ``n`` comparisons
    and softmax probabilities ``P = (P_a, P_b, P_c)`` of ``(h, -h, lam)``:
    ``dLL/dh = w - l - n (P_a - P_b)``, ``dLL/dlam = t - n P_c``, and the Hessian of ``-LL``
    in ``(h, lam)`` is ``n [[P_a + P_b - (P_a - P_b)^2, -(P_a - P_b) P_c], [., P_c (1 - P_c)]]``;
    ``h = (theta_i - theta_j) / 2`` scales the theta entries by 1/2 and 1/4.
    """
    k = len(x) - 1 if fit_nu else len(x)
    theta = x[:k]
    lam = x[k] if fit_nu else -np.inf
    h = 0.5 * (theta[cells.first] - theta[cells.second])
    logits = np.stack([h, -h, np.full_like(h, lam)], 1)
    top = logits.max(axis=1, keepdims=True)
    expd = np.exp(logits - top)
    total = expd.sum(axis=1, keepdims=True)
    prob = expd / total
    log_norm = (top + np.log(total)).ravel()
    n = counts.sum(axis=1)
    wins, losses, ties = counts[:, 0], counts[:, 1], counts[:, 2]

    tie_term = ties * lam if fit_nu else np.zeros_like(h)
    loglik = float(np.sum((wins - losses) * h + tie_term - n * log_norm))
    prior = 0.5 * l2 * float(x @ x)

    diff = prob[:, 0] - prob[:, 1]
    g_h = wins - losses - n * diff
    grad = np.zeros_like(x)
    grad[:k] = _per_item(cells, -0.5 * g_h, k)
    h_hh = 0.25 * n * (prob[:, 0] + prob[:, 1] - diff * diff)
    hess = np.zeros((len(x), len(x)))
    hess[np.diag_indices(k)] = _per_item(cells, h_hh, k, sign=1.0)
    # Pairs are unique and first < second, so plain assignment adds nothing twice.
    hess[cells.first, cells.second] = -h_hh
    hess[cells.second, cells.first] = -h_hh
    if fit_nu:
        grad[k] = -float(np.sum(ties - n * prob[:, 2]))
        hess[k, :k] = _per_item(cells, -0.5 * n * diff * prob[:, 2], k)
        hess[:k, k] = hess[k, :k]
        hess[k, k] = float(np.sum(n * prob[:, 2] * (1.0 - prob[:, 2])))
    grad += l2 * x
    hess[np.diag_indices_from(hess)] += l2
    return -loglik + prior, grad, hess


def _newton(
    x0: FloatArray, cells: _Cells, counts: FloatArray, l2: float, fit_nu: bool, n_items: int
) -> tuple[FloatArray, float, int, bool]:
    """Minimise ``_objective`` from ``x0``: ``(x, log-likelihood, iterations, converged)``."""
    x = x0.copy()
    value, grad, hess = _objective(x, cells, counts, l2, fit_nu)
    if l2 == 0.0:
        # Without a prior theta is defined up to a shift: adding 1 1^T to the theta block
        # removes that null direction without changing the step, which is orthogonal to it.
        hess[:n_items, :n_items] += 1.0
    for iteration in range(1, 101):
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            raise ValueError("the comparisons do not connect every item; fit with l2 > 0") from None
        # The Newton decrement g^T H^-1 g is twice the predicted decrease of the objective.
        decrement = float(grad @ step)
        scale = max(1.0, abs(value))
        if decrement <= 1e-14 * scale:
            return x, _loglik(x, cells, counts, l2, fit_nu), iteration, True
        t = 1.0
        while True:
            candidate = x - t * step
            new_value, new_grad, new_hess = _objective(candidate, cells, counts, l2, fit_nu)
            if new_value <= value - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < 1e-10:
                # No descent left within rounding error: converged if the decrement is tiny.
                converged = decrement <= 1e-8 * scale
                return x, _loglik(x, cells, counts, l2, fit_nu), iteration, converged
        x, value, grad, hess = candidate, new_value, new_grad, new_hess
        if l2 == 0.0:
            hess[:n_items, :n_items] += 1.0
    return x, _loglik(x, cells, counts, l2, fit_nu), 100, False


def _loglik(x: FloatArray, cells: _Cells, counts: FloatArray, l2: float, fit_nu: bool) -> float:
    value, _, _ = _objective(x, cells, counts, l2, fit_nu)
    return -(value - 0.5 * l2 * float(x @ x))


@dataclass(frozen=True)
class BradleyTerryFit:
    """Fitted Davidson model: log-strength ``scores[i]`` of ``items[i]`` and the tie parameter."""

    items: tuple[Hashable, ...]
    scores: FloatArray  # theta, natural-log strengths; mean 0, or 0 at the reference item
    nu: float
    log_likelihood: float  # of the data, without the prior
    iterations: int
    converged: bool
    reference: Hashable | None
    # Items that never won nor tied, or never lost nor tied: their scores rest on the prior (with
    # l2 = 0 they run off as far as the optimiser went). Separation of a whole set of items
    # (a group that beat every other item) is not detected.
    separated: tuple[Hashable, ...]

    def win_probability(self, i: Hashable, j: Hashable) -> tuple[float, float, float]:
        """``(P(i beats j), P(j beats i), P(tie))`` under the fitted model."""
        index = {item: k for k, item in enumerate(self.items)}
        h = 0.5 * (self.scores[index[i]] - self.scores[index[j]])
        weights = np.array([np.exp(h), np.exp(-h), self.nu])
        p = weights / weights.sum()
        return float(p[0]), float(p[1]), float(p[2])


@dataclass(frozen=True)
class _Prepared:
    items: tuple[Hashable, ...]
    a: IntArray
    b: IntArray
    scores: FloatArray
    cells: _Cells
    fit_nu: bool
    wins: FloatArray  # per item
    losses: FloatArray
    ties: FloatArray

    @property
    def separated(self) -> NDArray[np.bool_]:
        return np.asarray((self.wins + self.ties == 0) | (self.losses + self.ties == 0))


def _tally(side: IntArray, hits: NDArray[np.bool_], n_items: int) -> FloatArray:
    counted = np.bincount(side, weights=hits.astype(np.float64), minlength=n_items)
    return np.asarray(counted, dtype=np.float64)


def _prepare(
    item_a: Sequence[Hashable], item_b: Sequence[Hashable], outcomes: Sequence[str]
) -> _Prepared:
    scores = outcome_scores(outcomes)
    check_same_length(len(scores), item_a=item_a, item_b=item_b)
    items = tuple(dict.fromkeys([*item_a, *item_b]))
    index = {item: k for k, item in enumerate(items)}
    a = np.fromiter((index[x] for x in item_a), dtype=np.intp, count=len(scores))
    b = np.fromiter((index[x] for x in item_b), dtype=np.intp, count=len(scores))
    if np.any(a == b):
        k = int(np.flatnonzero(a == b)[0])
        raise ValueError(f"comparison {k} compares {item_a[k]!r} with itself")
    fit_nu = bool(np.any(scores == 0.5))
    k = len(items)
    won, lost, tied = scores == 1.0, scores == 0.0, scores == 0.5
    wins = _tally(a, won, k) + _tally(b, lost, k)
    losses = _tally(a, lost, k) + _tally(b, won, k)
    ties = _tally(a, tied, k) + _tally(b, tied, k)
    return _Prepared(items, a, b, scores, _aggregate(a, b, scores), fit_nu, wins, losses, ties)


def _fit_prepared(
    data: _Prepared, weights: FloatArray, l2: float, x0: FloatArray | None
) -> tuple[FloatArray, float, float, int, bool]:
    cells = np.bincount(data.cells.cell, weights=weights, minlength=3 * data.cells.n_pairs)
    counts = np.asarray(cells, dtype=np.float64).reshape(data.cells.n_pairs, 3)
    n_items = len(data.items)
    if x0 is None:
        x0 = np.zeros(n_items + (1 if data.fit_nu else 0))
    x, loglik, iterations, converged = _newton(x0, data.cells, counts, l2, data.fit_nu, n_items)
    theta = x[:n_items] - x[:n_items].mean()
    nu = float(np.exp(x[n_items])) if data.fit_nu else 0.0
    return np.concatenate([theta, x[n_items:]]), nu, loglik, iterations, converged


def _check_l2(l2: float) -> None:
    if not l2 >= 0.0:
        raise ValueError(f"l2 must not be negative, not {l2}")


def _shift(
    theta: FloatArray, items: tuple[Hashable, ...], reference: Hashable | None
) -> FloatArray:
    if reference is None:
        return theta
    if reference not in items:
        raise ValueError(f"the reference item {reference!r} is in no comparison")
    return theta - theta[..., [items.index(reference)]]


def _full_fit(
    data: _Prepared, l2: float, reference: Hashable | None
) -> tuple[BradleyTerryFit, FloatArray]:
    """The fit of all comparisons, and its raw parameter vector for warm starts."""
    x, nu, loglik, iterations, converged = _fit_prepared(data, np.ones(len(data.a)), l2, None)
    theta = _shift(x[: len(data.items)], data.items, reference)
    separated = tuple(item for item, flag in zip(data.items, data.separated, strict=True) if flag)
    fit = BradleyTerryFit(
        data.items, theta, nu, loglik, iterations, converged, reference, separated
    )
    return fit, x


def fit_bradley_terry(
    item_a: Sequence[Hashable],
    item_b: Sequence[Hashable],
    outcomes: Sequence[str],
    *,
    l2: float = 0.01,
    reference: Hashable | None = None,
) -> BradleyTerryFit:
    """Maximum a-posteriori Davidson fit of comparisons ``item_a[k]`` vs ``item_b[k]``.

    ``outcomes[k]`` is read from ``item_a[k]``'s side (win, loss or tie). Maximises
    ``sum_k log P(outcome_k) - l2/2 (sum_i theta_i^2 + (log nu)^2)`` (the module docstring
    gives the model); ``l2 = 0`` is the plain maximum-likelihood fit, which needs every item
    connected by comparisons and exists only when no item is separated.
    """
    _check_l2(l2)
    fit, _ = _full_fit(_prepare(item_a, item_b, outcomes), l2, reference)
    return fit


@dataclass(frozen=True)
class LeaderboardRow:
    """One item of a Bradley-Terry leaderboard."""

    item: Hashable
    score: float  # theta, as in ``BradleyTerryFit.scores``
    ci_low: float
    ci_high: float
    votes: int  # comparisons the item took part in
    wins: int
    losses: int
    ties: int
    provisional: bool  # fewer than ``min_votes`` votes
    separated: bool  # as in ``BradleyTerryFit.separated``


@dataclass(frozen=True)
class Leaderboard:
    """Leaderboard rows, best score first, and the fit they come from."""

    rows: tuple[LeaderboardRow, ...]
    fit: BradleyTerryFit
    confidence: float
    n_prompts: int
    n_resamples: int


def bradley_terry_leaderboard(
    item_a: Sequence[Hashable],
    item_b: Sequence[Hashable],
    outcomes: Sequence[str],
    groups: Sequence[Hashable],
    *,
    min_votes: int = 100,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    l2: float = 0.01,
    reference: Hashable | None = None,
) -> Leaderboard:
    """Davidson fit with prompt-level bootstrap intervals, as leaderboard rows.

    Each resample draws the prompts ``groups`` with replacement, weights every comparison by
    the times its prompt was drawn, and refits (warm-started at the full fit). An item's
    interval is the central ``confidence`` percentile interval of its resampled scores, with the
    same normalisation (mean 0 or ``reference`` at 0) as the score.
    """
    _check_l2(l2)
    check_bootstrap_arguments(n_resamples, confidence)
    if min_votes < 0:
        raise ValueError(f"min_votes must not be negative, not {min_votes}")
    data = _prepare(item_a, item_b, outcomes)
    check_same_length(len(data.a), groups=groups)
    codes, n_groups = group_codes(groups)
    n_items = len(data.items)

    fit, x = _full_fit(data, l2, reference)

    rng = np.random.default_rng(seed)
    samples = []
    for counts in resampled_group_counts(n_groups, n_resamples, rng):
        for row in counts:
            weights = row[codes]
            # A tie-free resample of tied data keeps fitting nu; its optimum is then the prior's.
            refit, *_ = _fit_prepared(data, weights, l2, x)
            samples.append(refit[:n_items])
    resampled = _shift(np.array(samples), data.items, reference)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail], axis=0)
    wins, losses, ties = data.wins, data.losses, data.ties
    votes = wins + losses + ties
    rows = [
        LeaderboardRow(
            item=item,
            score=float(fit.scores[k]),
            ci_low=float(low[k]),
            ci_high=float(high[k]),
            votes=int(votes[k]),
            wins=int(wins[k]),
            losses=int(losses[k]),
            ties=int(ties[k]),
            provisional=bool(votes[k] < min_votes),
            separated=bool(data.separated[k]),
        )
        for k, item in enumerate(data.items)
    ]
    rows.sort(key=lambda row: row.score, reverse=True)
    return Leaderboard(tuple(rows), fit, confidence, n_groups, n_resamples)
