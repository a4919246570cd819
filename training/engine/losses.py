"""The preference losses of ../shared/DPO.md ("The loss menu"), as pure functions.

Shapes: a :class:`PairLogps` holds float tensors of shape [B], one value per pair: the policy's
SUMMED response log-probs ``s_w``, ``s_l`` (prompt and padding excluded), the response token
counts ``n_w``, ``n_l``, and the reference's summed log-probs (``None`` in reference-free mode,
where they are taken as 0). Every loss function returns ``(losses, chosen_rewards,
rejected_rewards)``, each of shape [B]: the per-pair losses (differentiable) and the implicit
rewards, detached. Names follow TRL 1.16's ``DPOConfig.loss_type``, so that a TRL user's setting
means the same here; docs/engine.md gives the formulas with their papers.

With ``r_w = s_w - log pi_ref(y_w|x)``, ``r_l`` likewise, and ``h = r_w - r_l``, the rewards are
``beta * r_w`` and ``beta * r_l`` (for ``simpo``: ``beta * s_w / n_w`` and ``beta * s_l / n_l``).

``sft`` is the one loss that is not a mean over pairs: its "losses" are the chosen responses'
summed negative log-likelihoods ``-s_w``, and its batch value divides their sum by the batch's
chosen token count (a token mean, as TRL computes it). :func:`combine` keeps the two kinds apart
and :func:`batch_loss` shows how a batch's value is formed, with per-pair weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import (
    LABEL_SMOOTHING_RANGES,
    LOSS_TYPES,
    REFERENCE_FREE_LOSSES,
    check_loss_settings,
)

__all__ = ["LABEL_SMOOTHING_RANGES", "LOSS_TYPES", "REFERENCE_FREE_LOSSES", "check_loss_settings"]


@dataclass(frozen=True)
class PairLogps:
    """Per-pair inputs of the losses; every tensor has shape [B] (see the module docstring)."""

    policy_chosen: torch.Tensor  # s_w
    policy_rejected: torch.Tensor  # s_l
    chosen_tokens: torch.Tensor  # n_w >= 1
    rejected_tokens: torch.Tensor  # n_l >= 1
    reference_chosen: torch.Tensor | None = None  # log pi_ref(y_w|x); None: reference-free
    reference_rejected: torch.Tensor | None = None

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_w, r_l)``; in reference-free mode the policy's summed log-probs."""
        if self.reference_chosen is None or self.reference_rejected is None:
            return self.policy_chosen, self.policy_rejected
        dtype = self.policy_chosen.dtype
        return (
            self.policy_chosen - self.reference_chosen.to(dtype),
            self.policy_rejected - self.reference_rejected.to(dtype),
        )

    def token_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.policy_chosen.dtype
        return self.chosen_tokens.to(dtype), self.rejected_tokens.to(dtype)


LossResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _rewards(x: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    r_w, r_l = x.log_ratios()
    return beta * r_w.detach(), beta * r_l.detach()


def _margin(x: PairLogps) -> torch.Tensor:
    r_w, r_l = x.log_ratios()
    return r_w - r_l


def _length_averaged_margin(x: PairLogps) -> torch.Tensor:
    r_w, r_l = x.log_ratios()
    n_w, n_l = x.token_counts()
    return r_w / n_w - r_l / n_l


def sigmoid_loss(x: PairLogps, beta: float, label_smoothing: float = 0.0) -> LossResult:
    """``-(1-eps) log sigma(beta h) - eps log sigma(-beta h)``; eps = 0 is DPO."""
    z = beta * _margin(x)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(z)  # logsigmoid is stable for large |z|
    if label_smoothing:
        losses = losses - label_smoothing * F.logsigmoid(-z)
    return (losses, *_rewards(x, beta))


def robust_loss(x: PairLogps, beta: float, label_smoothing: float = 0.0) -> LossResult:
    """``[-(1-eps) log sigma(beta h) + eps log sigma(-beta h)] / (1 - 2 eps)``."""
    z = beta * _margin(x)
    eps = label_smoothing
    losses = (-(1.0 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps)
    return (losses, *_rewards(x, beta))


def hinge_loss(x: PairLogps, beta: float) -> LossResult:
    """``max(0, 1 - beta h)``."""
    return (torch.relu(1.0 - beta * _margin(x)), *_rewards(x, beta))


def ipo_loss(x: PairLogps, beta: float) -> LossResult:
    """``(r_w/n_w - r_l/n_l - 1/(2 beta))^2``: IPO on length-averaged log-ratios (TRL's form)."""
    return ((_length_averaged_margin(x) - 1.0 / (2.0 * beta)) ** 2, *_rewards(x, beta))


def ipo_sum_loss(x: PairLogps, beta: float) -> LossResult:
    """``(h - 1/(2 beta))^2``: IPO on summed log-ratios."""
    return ((_margin(x) - 1.0 / (2.0 * beta)) ** 2, *_rewards(x, beta))


def sigmoid_norm_loss(x: PairLogps, beta: float) -> LossResult:
    """``-log sigma(beta (r_w/n_w - r_l/n_l))``."""
    return (-F.logsigmoid(beta * _length_averaged_margin(x)), *_rewards(x, beta))


def nca_pair_loss(x: PairLogps, beta: float) -> LossResult:
    """``-log sigma(beta r_w) - 0.5 log sigma(-beta r_w) - 0.5 log sigma(-beta r_l)``."""
    r_w, r_l = x.log_ratios()
    u_w, u_l = beta * r_w, beta * r_l
    losses = -F.logsigmoid(u_w) - 0.5 * F.logsigmoid(-u_w) - 0.5 * F.logsigmoid(-u_l)
    return (losses, *_rewards(x, beta))


def bco_pair_loss(x: PairLogps, beta: float) -> LossResult:
    """``-log sigma(beta r_w) - log sigma(-beta r_l)`` (no running mean, as TRL 1.16)."""
    r_w, r_l = x.log_ratios()
    return (-F.logsigmoid(beta * r_w) - F.logsigmoid(-beta * r_l), *_rewards(x, beta))


def sppo_hard_loss(x: PairLogps, beta: float) -> LossResult:
    """``(r_w - 1/(2 beta))^2 + (r_l + 1/(2 beta))^2``."""
    r_w, r_l = x.log_ratios()
    target = 1.0 / (2.0 * beta)
    return ((r_w - target) ** 2 + (r_l + target) ** 2, *_rewards(x, beta))


def apo_zero_loss(x: PairLogps, beta: float) -> LossResult:
    """``(1 - sigma(beta r_w)) + sigma(beta r_l)``."""
    r_w, r_l = x.log_ratios()
    losses = (1.0 - torch.sigmoid(beta * r_w)) + torch.sigmoid(beta * r_l)
    return (losses, *_rewards(x, beta))


def apo_down_loss(x: PairLogps, beta: float) -> LossResult:
    """``sigma(beta r_w) + (1 - sigma(beta h))``."""
    r_w, r_l = x.log_ratios()
    losses = torch.sigmoid(beta * r_w) + (1.0 - torch.sigmoid(beta * (r_w - r_l)))
    return (losses, *_rewards(x, beta))


def exo_pair_loss(x: PairLogps, beta: float, label_smoothing: float) -> LossResult:
    """``q log(q/(1-eps)) + (1-q) log((1-q)/eps)`` with ``q = sigma(beta h)``, eps in (0, 1)."""
    z = beta * _margin(x)
    eps = label_smoothing
    losses = torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps)) + torch.sigmoid(-z) * (
        F.logsigmoid(-z) - math.log(eps)
    )
    return (losses, *_rewards(x, beta))


def simpo_loss(x: PairLogps, beta: float, gamma: float) -> LossResult:
    """``-log sigma(beta (s_w/n_w - s_l/n_l) - gamma)``; the reference is never used."""
    n_w, n_l = x.token_counts()
    avg_w, avg_l = x.policy_chosen / n_w, x.policy_rejected / n_l
    losses = -F.logsigmoid(beta * (avg_w - avg_l) - gamma)
    return losses, beta * avg_w.detach(), beta * avg_l.detach()


def sft_loss(x: PairLogps, beta: float) -> LossResult:
    """``-s_w``, the chosen reply's summed NLL; a batch's value is ``sum(-s_w) / sum(n_w)``."""
    return (-x.policy_chosen, *_rewards(x, beta))


_LOSS_FUNCTIONS: Mapping[str, Callable[..., LossResult]] = {
    "sigmoid": sigmoid_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "ipo": ipo_loss,
    "ipo_sum": ipo_sum_loss,
    "sigmoid_norm": sigmoid_norm_loss,
    "nca_pair": nca_pair_loss,
    "bco_pair": bco_pair_loss,
    "sppo_hard": sppo_hard_loss,
    "apo_zero": apo_zero_loss,
    "apo_down": apo_down_loss,
    "exo_pair": exo_pair_loss,
    "simpo": simpo_loss,
    "sft": sft_loss,
}


def loss_terms(
    name: str, x: PairLogps, beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5
) -> LossResult:
    """One loss of the menu by its name, with the settings it takes."""
    fn = _LOSS_FUNCTIONS[name]
    if name in LABEL_SMOOTHING_RANGES:
        return fn(x, beta, label_smoothing)
    if name == "simpo":
        return fn(x, beta, simpo_gamma)
    return fn(x, beta)


@dataclass(frozen=True)
class LossSpec:
    """A loss or a weighted combination ``sum_k weight_k * loss_k``, with its settings."""

    types: tuple[str, ...]
    weights: tuple[float, ...]
    beta: float
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5

    def __post_init__(self) -> None:
        check_loss_settings(
            self.types, self.weights, self.beta, self.label_smoothing, self.simpo_gamma
        )

    @property
    def needs_reference(self) -> bool:
        return any(t not in REFERENCE_FREE_LOSSES for t in self.types)


@dataclass(frozen=True)
class CombinedLoss:
    """:func:`combine`'s result; all tensors [B]."""

    pair: torch.Tensor  # sum_k w_k L_k over the pairwise losses: a batch averages it over pairs
    token: torch.Tensor  # w_sft * (-s_w): a batch divides its sum by the chosen token count
    chosen_rewards: torch.Tensor  # detached
    rejected_rewards: torch.Tensor  # detached


def combine(x: PairLogps, spec: LossSpec) -> CombinedLoss:
    """Every loss of ``spec`` on one batch, weighted and summed per kind (see CombinedLoss).

    The rewards are those of the first loss that is not ``sft`` (all but ``simpo`` share them;
    ``simpo`` combines only with ``sft``), or ``sft``'s own when it stands alone.
    """
    pair = torch.zeros_like(x.policy_chosen)
    token = torch.zeros_like(x.policy_chosen)
    rewards: tuple[torch.Tensor, torch.Tensor] | None = None
    sft_rewards = _rewards(x, spec.beta)
    for name, weight in zip(spec.types, spec.weights, strict=True):
        losses, chosen, rejected = loss_terms(
            name, x, spec.beta, spec.label_smoothing, spec.simpo_gamma
        )
        if name == "sft":
            token = token + weight * losses
        else:
            pair = pair + weight * losses
            if rewards is None:
                rewards = (chosen, rejected)
    return CombinedLoss(pair, token, *(rewards or sft_rewards))


def batch_loss(
    combined: CombinedLoss, chosen_tokens: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """A whole batch's loss: ``sum_i w_i P_i / sum_i w_i + sum_i w_i T_i / sum_i w_i n_w,i``
    (``P`` the pairwise part, ``T`` the sft part, ``w`` the per-pair weights, 1 when None).

    The training loop forms exactly this over an optimizer step, however the step is cut into
    micro-batches, by dividing each micro-batch's sums by the whole step's denominators.
    """
    w = torch.ones_like(combined.pair) if weights is None else weights.to(combined.pair.dtype)
    n_w = chosen_tokens.to(combined.pair.dtype)
    return (w * combined.pair).sum() / w.sum() + (w * combined.token).sum() / (w * n_w).sum()
