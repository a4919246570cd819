"""The loss menu against plain float64 implementations of ../shared/DPO.md: per-pair losses,
rewards and gradients to 1e-6, and a batch's weighted value.

The reference formulas below are written from DPO.md's table scalar by scalar with Python
floats; their gradients are central differences of those formulas, so nothing here shares code
or autograd with training/engine/losses.py.
"""

from __future__ import annotations

import math
import typing

import pytest
import torch

from training.engine.config import (
    LABEL_SMOOTHING_RANGES,
    LOSS_TYPES,
    ConfigError,
    DPOConfig,
    LossType,
    config_from_dict,
)
from training.engine.losses import LossSpec, PairLogps, batch_loss, combine, loss_terms


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigma(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def formula(name, sw, sl, ref_w, ref_l, nw, nl, beta, eps, gamma):
    """(loss, chosen reward, rejected reward) of one pair, from DPO.md's table."""
    r_w, r_l = sw - ref_w, sl - ref_l
    h = r_w - r_l
    b = beta
    if name == "sigmoid":
        loss = -(1 - eps) * log_sigmoid(b * h) - eps * log_sigmoid(-b * h)
    elif name == "robust":
        loss = (-(1 - eps) * log_sigmoid(b * h) + eps * log_sigmoid(-b * h)) / (1 - 2 * eps)
    elif name == "hinge":
        loss = max(0.0, 1 - b * h)
    elif name == "ipo":
        loss = (r_w / nw - r_l / nl - 1 / (2 * b)) ** 2
    elif name == "ipo_sum":
        loss = (h - 1 / (2 * b)) ** 2
    elif name == "sigmoid_norm":
        loss = -log_sigmoid(b * (r_w / nw - r_l / nl))
    elif name == "nca_pair":
        loss = -log_sigmoid(b * r_w) - 0.5 * log_sigmoid(-b * r_w) - 0.5 * log_sigmoid(-b * r_l)
    elif name == "bco_pair":
        loss = -log_sigmoid(b * r_w) - log_sigmoid(-b * r_l)
    elif name == "sppo_hard":
        loss = (r_w - 1 / (2 * b)) ** 2 + (r_l + 1 / (2 * b)) ** 2
    elif name == "apo_zero":
        loss = (1 - sigma(b * r_w)) + sigma(b * r_l)
    elif name == "apo_down":
        loss = sigma(b * r_w) + (1 - sigma(b * h))
    elif name == "exo_pair":
        q = sigma(b * h)
        loss = q * math.log(q / (1 - eps)) + (1 - q) * math.log((1 - q) / eps)
    elif name == "simpo":
        loss = -log_sigmoid(b * (sw / nw - sl / nl) - gamma)
        return loss, b * sw / nw, b * sl / nl
    elif name == "sft":
        loss = -sw  # summed NLL; the batch divides by the chosen tokens
    else:
        raise AssertionError(name)
    return loss, b * r_w, b * r_l


def finite_difference(f, x: float, step: float = 1e-5) -> float:
    return (f(x + step) - f(x - step)) / (2 * step)


def settings_for(name: str) -> list[tuple[float, float]]:
    """(beta, eps) pairs to test a loss at."""
    if name in ("sigmoid", "robust"):
        return [(0.1, 0.0), (0.5, 0.2)]
    if name == "exo_pair":
        return [(0.1, 1e-3), (0.7, 0.3)]
    return [(0.1, 0.0), (1.5, 0.0)]


CASES = [
    (name, beta, eps, reference_free)
    for name in LOSS_TYPES
    for beta, eps in settings_for(name)
    for reference_free in (False, True)
    if not (reference_free and name in ("simpo", "sft"))  # those never read the reference
]


def inputs(n: int = 48, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sw = torch.randn(n, generator=gen, dtype=torch.float64) * 12 - 40
    sl = torch.randn(n, generator=gen, dtype=torch.float64) * 12 - 40
    ref_w = sw + torch.randn(n, generator=gen, dtype=torch.float64) * 8
    ref_l = sl + torch.randn(n, generator=gen, dtype=torch.float64) * 8
    nw = torch.randint(1, 40, (n,), generator=gen).double()
    nl = torch.randint(1, 40, (n,), generator=gen).double()
    return sw, sl, ref_w, ref_l, nw, nl


@pytest.mark.parametrize(("name", "beta", "eps", "reference_free"), CASES)
def test_each_loss_equals_its_float64_formula(name, beta, eps, reference_free):
    gamma = 0.7
    sw, sl, ref_w, ref_l, nw, nl = inputs()
    pc, pr = sw.clone().requires_grad_(), sl.clone().requires_grad_()
    x = PairLogps(
        pc,
        pr,
        nw,
        nl,
        None if reference_free else ref_w,
        None if reference_free else ref_l,
    )
    losses, chosen, rejected = loss_terms(name, x, beta, eps, gamma)
    assert losses.shape == chosen.shape == rejected.shape == (len(sw),)
    assert not chosen.requires_grad and not rejected.requires_grad
    losses.sum().backward()
    grads_w, grads_l = (g if g is not None else torch.zeros_like(sw) for g in (pc.grad, pr.grad))

    for i in range(len(sw)):
        a, b, c, d = sw[i].item(), sl[i].item(), ref_w[i].item(), ref_l[i].item()
        if reference_free:
            c = d = 0.0
        n_w, n_l = nw[i].item(), nl[i].item()

        def f(a_, b_, c=c, d=d, n_w=n_w, n_l=n_l):
            return formula(name, a_, b_, c, d, n_w, n_l, beta, eps, gamma)

        want, want_c, want_r = f(a, b)
        assert losses[i].item() == pytest.approx(want, abs=1e-6, rel=0)
        assert chosen[i].item() == pytest.approx(want_c, abs=1e-6, rel=0)
        assert rejected[i].item() == pytest.approx(want_r, abs=1e-6, rel=0)
        grad_w = finite_difference(lambda v, b=b, f=f: f(v, b)[0], a)
        grad_l = finite_difference(lambda v, a=a, f=f: f(a, v)[0], b)
        assert grads_w[i].item() == pytest.approx(grad_w, abs=1e-6, rel=0), i
        assert grads_l[i].item() == pytest.approx(grad_l, abs=1e-6, rel=0), i


@pytest.mark.parametrize(
    ("types", "loss_weights", "eps"),
    [
        (("sigmoid",), (1.0,), 0.0),
        (("sigmoid", "sft"), (1.0, 0.5), 0.1),  # RPO
        (("sigmoid", "bco_pair", "sft"), (0.8, 0.2, 1.0), 0.0),  # MPO's combination
        (("simpo", "sft"), (1.0, 0.3), 0.0),  # CPO-style SimPO + NLL
        (("sft",), (1.0,), 0.0),
        (("ipo", "hinge"), (2.0, 0.25), 0.0),
    ],
)
def test_a_weighted_batch_equals_the_float64_weighted_mean(types, loss_weights, eps):
    beta, gamma = 0.3, 0.5
    sw, sl, ref_w, ref_l, nw, nl = inputs(16, seed=3)
    gen = torch.Generator().manual_seed(4)
    w = torch.rand(16, generator=gen, dtype=torch.float64) * 3
    w[2] = 0.0  # a zero weight is allowed

    def value(s_w: list[float], s_l: list[float]) -> float:
        """DPO.md: sum_i w_i L_i / sum_i w_i; sft: the weighted chosen-token mean NLL."""
        pair_num, sft_num = 0.0, 0.0
        for i in range(16):
            for name, k in zip(types, loss_weights, strict=True):
                loss, _, _ = formula(
                    name,
                    s_w[i],
                    s_l[i],
                    ref_w[i].item(),
                    ref_l[i].item(),
                    nw[i].item(),
                    nl[i].item(),
                    beta,
                    eps,
                    gamma,
                )
                if name == "sft":
                    sft_num += k * w[i].item() * loss
                else:
                    pair_num += k * w[i].item() * loss
        tokens = sum(w[i].item() * nw[i].item() for i in range(16))
        return pair_num / w.sum().item() + sft_num / tokens

    pc, pr = sw.clone().requires_grad_(), sl.clone().requires_grad_()
    spec = LossSpec(types, loss_weights, beta, eps, gamma)
    references = (None, None) if not spec.needs_reference else (ref_w, ref_l)
    combined = combine(PairLogps(pc, pr, nw, nl, *references), spec)
    total = batch_loss(combined, nw, w)
    assert total.item() == pytest.approx(value(sw.tolist(), sl.tolist()), abs=1e-6, rel=0)
    total.backward()
    grads_w, grads_l = (g if g is not None else torch.zeros_like(sw) for g in (pc.grad, pr.grad))
    for i in range(16):

        def bump(side: int, v: float, i: int = i) -> float:
            s_w, s_l = sw.tolist(), sl.tolist()
            (s_w if side == 0 else s_l)[i] = v
            return value(s_w, s_l)

        grad_w = finite_difference(lambda v: bump(0, v), sw[i].item())
        grad_l = finite_difference(lambda v: bump(1, v), sl[i].item())
        assert grads_w[i].item() == pytest.approx(grad_w, abs=1e-6, rel=0)
        assert grads_l[i].item() == pytest.approx(grad_l, abs=1e-6, rel=0)


def test_float32_inputs_stay_close_to_float64():
    sw, sl, ref_w, ref_l, nw, nl = inputs(32, seed=5)
    for name in LOSS_TYPES:
        eps = 0.1 if name in LABEL_SMOOTHING_RANGES else 0.0
        x32 = PairLogps(*(t.float() for t in (sw, sl, nw, nl, ref_w, ref_l)))
        x64 = PairLogps(sw, sl, nw, nl, ref_w, ref_l)
        got, _, _ = loss_terms(name, x32, 0.1, eps)
        want, _, _ = loss_terms(name, x64, 0.1, eps)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_dpo_is_ln2_at_the_reference_and_stays_finite_far_from_it():
    x = torch.tensor([-10.0, -3.5, -80.0])
    y = torch.tensor([-12.0, -1.0, -79.0])
    n = torch.ones(3)
    losses, chosen, rejected = loss_terms("sigmoid", PairLogps(x, y, n, n, x, y), 0.1)
    torch.testing.assert_close(losses, torch.full((3,), math.log(2.0)))
    assert chosen.abs().max() == 0 and rejected.abs().max() == 0
    far = torch.tensor([0.0, -1e4], dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    ones = torch.ones(2, dtype=torch.float64)
    for name in LOSS_TYPES:
        eps = 1e-3 if name in LABEL_SMOOTHING_RANGES else 0.0
        x = PairLogps(far, far.flip(0), ones, ones, zeros, zeros)
        losses, _, _ = loss_terms(name, x, 1.0, eps)
        assert torch.isfinite(losses).all(), name


def test_the_config_offers_exactly_the_loss_menu():
    assert tuple(LOSS_TYPES) == typing.get_args(LossType)
    assert all(isinstance(h, str) and h and "\n" not in h for h in LOSS_TYPES.values())


BASE = {"data": "d.jsonl", "model": "m", "out_dir": "o"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loss_type": "dpo"}, "loss_type: expected one of"),
        ({"loss_type": ["sigmoid", "sigmoid"]}, "named twice"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "1 weight"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, -1.0]}, "positive"),
        ({"loss_type": "hinge", "label_smoothing": 0.1}, "only the losses"),
        ({"loss_type": "robust", "label_smoothing": 0.5}, r"'robust' needs it in \[0, 0.5\)"),
        ({"loss_type": "exo_pair"}, r"'exo_pair' needs it in \(0, 1\)"),
        ({"loss_type": ["exo_pair", "sigmoid"], "label_smoothing": 0.7}, "'sigmoid' needs"),
        ({"loss_type": ["simpo", "sigmoid"]}, "simpo is reference-free"),
        ({"loss_type": "simpo", "simpo_gamma": -1}, "simpo_gamma"),
        ({"loss_type": "simpo", "reference_model": "r"}, "never uses a reference"),
        ({"beta": 0}, "beta: must be positive"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        ({"loss_weights": [1, 2]}, "2 weight"),
    ],
)
def test_bad_loss_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(DPOConfig, {**BASE, **values})


def test_loss_lists_and_references():
    config = config_from_dict(
        DPOConfig, {**BASE, "loss_type": ["sigmoid", "sft"], "loss_weights": [1, 0.5]}
    )
    assert config.loss_types == ("sigmoid", "sft") and config.loss_weight_values == (1.0, 0.5)
    assert config.uses_reference
    assert not config_from_dict(DPOConfig, {**BASE, "loss_type": "simpo"}).uses_reference
    assert not config_from_dict(DPOConfig, {**BASE, "reference_free": True}).uses_reference
    exo = config_from_dict(DPOConfig, {**BASE, "loss_type": "exo_pair", "label_smoothing": 1e-3})
    assert exo.loss_types == ("exo_pair",) and exo.loss_weight_values == (1.0,)
