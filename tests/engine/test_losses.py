"""preference_loss equals a plain float64 implementation of ../shared/DPO.md, gradients too."""

from __future__ import annotations

import math

import pytest
import torch

from training.engine.losses import preference_loss


def reference_implementation(pc, pr, rc, rr, beta, eps, loss_type, reference_free):
    """DPO.md written out scalar by scalar in Python floats (float64)."""
    losses, chosen, rejected = [], [], []
    for a, b, c, d in zip(pc, pr, rc, rr, strict=True):
        if reference_free:
            c = d = 0.0
        h = (a - b) - (c - d)
        if loss_type == "sigmoid":

            def log_sigmoid(x):
                return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))

            losses.append(-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h))
        else:
            losses.append((h - 1 / (2 * beta)) ** 2)
        chosen.append(beta * (a - c))
        rejected.append(beta * (b - d))
    return losses, chosen, rejected


def reference_gradients(pc, pr, rc, rr, beta, eps, loss_type, reference_free):
    """d loss_i / d policy_chosen_i (= -d loss_i / d policy_rejected_i), by hand."""
    grads = []
    for a, b, c, d in zip(pc, pr, rc, rr, strict=True):
        if reference_free:
            c = d = 0.0
        h = (a - b) - (c - d)
        if loss_type == "sigmoid":
            s_pos = 1 / (1 + math.exp(-beta * h))
            grads.append(-(1 - eps) * beta * (1 - s_pos) + eps * beta * s_pos)
        else:
            grads.append(2 * (h - 1 / (2 * beta)))
    return grads


CASES = [
    ("sigmoid", 0.0, False, 0.1),
    ("sigmoid", 0.2, False, 0.5),  # conservative DPO
    ("ipo", 0.0, False, 0.1),
    ("sigmoid", 0.0, True, 0.1),  # reference-free
    ("sigmoid", 0.1, True, 2.0),
    ("ipo", 0.0, True, 0.3),
]


@pytest.mark.parametrize(("loss_type", "eps", "reference_free", "beta"), CASES)
def test_losses_rewards_and_gradients_equal_float64_formulas(loss_type, eps, reference_free, beta):
    gen = torch.Generator().manual_seed(0)
    n = 64
    pc = (torch.randn(n, generator=gen, dtype=torch.float64) * 20 - 60).requires_grad_()
    pr = (torch.randn(n, generator=gen, dtype=torch.float64) * 20 - 60).requires_grad_()
    rc = torch.randn(n, generator=gen, dtype=torch.float64) * 20 - 60
    rr = torch.randn(n, generator=gen, dtype=torch.float64) * 20 - 60

    losses, chosen, rejected = preference_loss(
        pc,
        pr,
        rc,
        rr,
        beta,
        label_smoothing=eps,
        loss_type=loss_type,
        reference_free=reference_free,
    )
    args = (
        pc.tolist(),
        pr.tolist(),
        rc.tolist(),
        rr.tolist(),
        beta,
        eps,
        loss_type,
        reference_free,
    )
    want_losses, want_chosen, want_rejected = reference_implementation(*args)
    torch.testing.assert_close(
        losses.detach(), torch.tensor(want_losses, dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        chosen, torch.tensor(want_chosen, dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        rejected, torch.tensor(want_rejected, dtype=torch.float64), rtol=0, atol=1e-6
    )
    assert not chosen.requires_grad and not rejected.requires_grad

    losses.sum().backward()
    want_grad = torch.tensor(reference_gradients(*args), dtype=torch.float64)
    torch.testing.assert_close(pc.grad, want_grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(pr.grad, -want_grad, rtol=0, atol=1e-6)


def test_float32_inputs_match_float64_formulas():
    gen = torch.Generator().manual_seed(1)
    values = [torch.randn(32, generator=gen) * 5 - 30 for _ in range(4)]
    losses, chosen, rejected = preference_loss(*values, beta=0.1)
    want, want_c, want_r = reference_implementation(
        *(v.double().tolist() for v in values), 0.1, 0.0, "sigmoid", False
    )
    torch.testing.assert_close(
        losses.double(), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        chosen.double() - rejected.double(),
        torch.tensor(want_c, dtype=torch.float64) - torch.tensor(want_r, dtype=torch.float64),
        rtol=0,
        atol=1e-5,
    )


def test_loss_is_ln2_when_policy_equals_reference():
    x = torch.tensor([-10.0, -3.5, -80.0])
    y = torch.tensor([-12.0, -1.0, -79.0])
    losses, chosen, rejected = preference_loss(x, y, x, y, beta=0.1)
    torch.testing.assert_close(losses, torch.full((3,), math.log(2.0)))
    assert chosen.abs().max() == 0 and rejected.abs().max() == 0


def test_large_margins_stay_finite():
    pc = torch.tensor([0.0, -1e4], dtype=torch.float64)
    pr = torch.tensor([-1e4, 0.0], dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    losses, _, _ = preference_loss(pc, pr, zeros, zeros, beta=1.0)
    assert torch.isfinite(losses).all()
    assert losses[0] == 0 and losses[1] == pytest.approx(1e4)


def test_bad_arguments_are_rejected():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="loss_type"):
        preference_loss(x, x, x, x, beta=0.1, loss_type="hinge")
    with pytest.raises(ValueError, match="beta"):
        preference_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        preference_loss(x, x, x, x, beta=0.1, loss_type="ipo", label_smoothing=0.1)
