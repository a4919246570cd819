"""The preference losses of ../shared/DPO.md as one pure function.

Shapes: every log-prob argument is a float tensor of shape [B] holding, per example, the SUM of
the response tokens' log-probabilities (prompt and padding excluded). The reference arguments
are ignored when ``reference_free`` is true (pass zeros or the policy values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo")


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
    reference_free: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example preference losses and implicit rewards.

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each of shape [B]; the rewards are
    detached. With ``h = (log pi(y_w) - log pi(y_l)) - (log ref(y_w) - log ref(y_l))``:

    - ``sigmoid``: ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``, which is
      DPO (Rafailov et al. 2023, Eq. 7) for ``eps = label_smoothing = 0`` and conservative DPO
      otherwise;
    - ``ipo``: ``(h - 1 / (2 * beta)) ** 2`` (Azar et al. 2023, Eq. 17), with summed log-probs.

    In reference-free mode the reference log-ratio is taken as 0 and the rewards are
    ``beta * log pi(y)``.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("label_smoothing applies to loss_type 'sigmoid' only")

    pi_logratio = policy_chosen_logps - policy_rejected_logps
    if reference_free:
        ref_chosen = torch.zeros_like(policy_chosen_logps)
        ref_rejected = torch.zeros_like(policy_rejected_logps)
    else:
        ref_chosen = reference_chosen_logps.to(policy_chosen_logps.dtype)
        ref_rejected = reference_rejected_logps.to(policy_rejected_logps.dtype)
    ref_logratio = ref_chosen - ref_rejected
    h = pi_logratio - ref_logratio

    if loss_type == "sigmoid":
        # logsigmoid is the numerically stable log(sigmoid(x)) for large |x|.
        losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * h)
        if label_smoothing:
            losses = losses - label_smoothing * F.logsigmoid(-beta * h)
    else:
        losses = (h - 1.0 / (2.0 * beta)) ** 2

    chosen_rewards = beta * (policy_chosen_logps - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
