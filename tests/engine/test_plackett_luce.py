"""The Plackett-Luce loss (training.engine.listwise): formula, gradients, ties, K = 2 = DPO,
the listwise loader's errors, and a short listwise training run on the tiny model."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from training.engine import EXIT_BAD_INPUT, EXIT_OK
from training.engine.config import LOSS_TYPES, ConfigError, DPOConfig, config_from_dict
from training.engine.data import DataError, Tokenization, read_records
from training.engine.listwise import (
    ListLogps,
    plackett_luce_loss,
    plackett_luce_nll,
    tokenize_rankings,
)
from training.engine.losses import PairLogps, sigmoid_loss
from training.engine.rankings import parse_ranking

from .conftest import engine, events, write_jsonl


def reference_nll(u: list[float], groups) -> float:
    """-log P(ordered partition): the sum over every full order consistent with the groups of
    the plain Plackett-Luce probability, by enumeration, in float64 (math module)."""
    total = 0.0
    for order in itertools.product(*(itertools.permutations(g) for g in groups)):
        flat = [i for g in order for i in g]
        p = 1.0
        for k in range(len(flat) - 1):
            p *= math.exp(u[flat[k]]) / sum(math.exp(u[j]) for j in flat[k:])
        total += p
    return -math.log(total)


def torch_reference_nll(u: torch.Tensor, groups) -> torch.Tensor:
    """The same enumeration with torch float64 ops, for reference gradients."""
    probs = []
    for order in itertools.product(*(itertools.permutations(g) for g in groups)):
        flat = [i for g in order for i in g]
        logp = u.new_zeros(())
        for k in range(len(flat) - 1):
            logp = logp + u[flat[k]] - torch.logsumexp(u[list(flat[k:])], dim=0)
        probs.append(logp)
    return -torch.logsumexp(torch.stack(probs), dim=0)


RANKINGS = [
    [0, 1, 2],
    [2, 0, 1, 3],
    [3, 1, 4, 0, 2, 5, 7, 6],
    [[0, 2], 1],
    [1, [0, 2]],
    [2, [0, 3], 1],
    [[4, 1], 0, [2, 3]],
    [[0, 1, 2], 3, [4, 5]],
    [[5, 1, 3, 0], 4, 2],
]


@pytest.mark.parametrize("ranking", RANKINGS, ids=str)
def test_loss_and_gradients_match_float64_enumeration(ranking):
    k = len([i for g in ranking for i in (g if isinstance(g, list) else [g])])
    groups = parse_ranking(ranking, k)
    gen = torch.Generator().manual_seed(k * 31 + len(groups))
    u = (3 * torch.randn(k, generator=gen, dtype=torch.float64)).requires_grad_()
    got = plackett_luce_nll(u, groups)
    assert got.item() == pytest.approx(reference_nll(u.tolist(), groups), abs=1e-10)
    (grad,) = torch.autograd.grad(got, u)
    (want,) = torch.autograd.grad(torch_reference_nll(u, groups), u)
    torch.testing.assert_close(grad, want, atol=1e-10, rtol=0)
    assert torch.autograd.gradcheck(
        lambda v: plackett_luce_nll(v, groups), (u.detach().requires_grad_(),)
    )


def test_batched_loss_uses_beta_and_reference_and_float32_agrees():
    rows = [parse_ranking([2, 0, 1], 3), parse_ranking([1, [0, 3], 2], 4)]
    gen = torch.Generator().manual_seed(0)
    policy = -20 - 10 * torch.rand(7, generator=gen, dtype=torch.float64)
    reference = policy + torch.randn(7, generator=gen, dtype=torch.float64)
    beta = 0.7
    losses, rewards = plackett_luce_loss(ListLogps(policy, (3, 4), reference), rows, beta)
    u = (beta * (policy - reference)).tolist()
    assert losses[0].item() == pytest.approx(reference_nll(u[:3], rows[0]), abs=1e-10)
    assert losses[1].item() == pytest.approx(reference_nll(u[3:], rows[1]), abs=1e-10)
    torch.testing.assert_close(torch.cat(rewards), beta * (policy - reference))
    f32, _ = plackett_luce_loss(ListLogps(policy.float(), (3, 4), reference.float()), rows, beta)
    torch.testing.assert_close(f32.double(), losses, atol=1e-5, rtol=1e-5)
    free, free_rewards = plackett_luce_loss(ListLogps(policy, (3, 4)), rows, beta)
    assert free[0].item() == pytest.approx(
        reference_nll((beta * policy[:3]).tolist(), rows[0]), abs=1e-10
    )
    torch.testing.assert_close(torch.cat(free_rewards), beta * policy)
    with pytest.raises(ValueError, match="sizes add up to 6"):
        plackett_luce_loss(ListLogps(policy, (3, 3)), rows, beta)


def test_k2_equals_pairwise_sigmoid_dpo_loss_and_gradients():
    gen = torch.Generator().manual_seed(1)
    b, beta = 6, 0.3
    s = (-30 * torch.rand(b, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    ref = -30 * torch.rand(b, 2, generator=gen, dtype=torch.float64)
    ones = torch.ones(b, dtype=torch.float64)
    pair, _, _ = sigmoid_loss(PairLogps(s[:, 0], s[:, 1], ones, ones, ref[:, 0], ref[:, 1]), beta)
    (pair_grad,) = torch.autograd.grad(pair.sum(), s)
    groups = [parse_ranking([0, 1], 2)] * b
    listwise, _ = plackett_luce_loss(
        ListLogps(s.reshape(-1), (2,) * b, ref.reshape(-1)), groups, beta
    )
    (list_grad,) = torch.autograd.grad(listwise.sum(), s)
    torch.testing.assert_close(listwise, pair, atol=1e-12, rtol=0)
    torch.testing.assert_close(list_grad, pair_grad, atol=1e-12, rtol=0)


def test_ties_are_marginalised_over_their_orders():
    u = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.float64)
    # the order inside a tie group does not matter
    a = plackett_luce_nll(u, parse_ranking([[0, 3], 2, 1], 4))
    b = plackett_luce_nll(u, parse_ranking([[3, 0], 2, 1], 4))
    assert a.item() == pytest.approx(b.item(), abs=1e-14)
    # a tied last group adds nothing: only "0 first" is observed
    tail = plackett_luce_nll(u, parse_ranking([0, [1, 2, 3]], 4))
    assert tail.item() == pytest.approx(-torch.log_softmax(u, 0)[0].item(), abs=1e-12)
    # a tied first group of K-1: only "1 is last" is observed
    head = plackett_luce_nll(u, parse_ranking([[0, 2, 3], 1], 4))
    p_last = sum(
        math.prod(math.exp(u[o[t]]) / sum(math.exp(u[j]) for j in [*o[t:], 1]) for t in range(3))
        for o in itertools.permutations([0, 2, 3])
    )
    assert head.item() == pytest.approx(-math.log(p_last), abs=1e-12)
    # the tie's likelihood is the sum of its strict orders' likelihoods
    strict = [plackett_luce_nll(u, parse_ranking([o0, o1, 2, 1], 4)) for o0, o1 in ((0, 3), (3, 0))]
    assert math.exp(-a.item()) == pytest.approx(sum(math.exp(-s.item()) for s in strict))
    # a tie costs less than either strict order it admits
    assert a.item() < min(s.item() for s in strict)


def test_plackett_luce_is_engine_only_and_stands_alone(tmp_path):
    assert "plackett_luce" not in LOSS_TYPES  # the run form and the API train on pairs
    base = {"data": "d.jsonl", "model": "m", "out_dir": str(tmp_path)}
    config = config_from_dict(DPOConfig, {**base, "loss_type": "plackett_luce"})
    assert config.listwise and config.uses_reference
    for bad, message in (
        ({"loss_type": ["plackett_luce", "sft"]}, "combines with no other loss"),
        ({"loss_type": "plackett_luce", "label_smoothing": 0.1}, "label_smoothing"),
        ({"loss_type": "plackett_luce", "loss_weights": [2.0]}, "leave loss_weights unset"),
        ({"loss_type": "plackett_luce", "beta": 0}, "beta: must be positive"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(DPOConfig, {**base, **bad})


GOOD = {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, 2]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {**GOOD, "responses": ["a"], "ranking": [0]},
            "'responses' holds 1 response(s); a ranking needs 2 to 8",
        ),
        (
            {"prompt": "p", "responses": [str(i) for i in range(9)], "ranking": list(range(9))},
            "'responses' holds 9 response(s)",
        ),
        ({**GOOD, "responses": ["a", "b", "a"]}, "responses 0 and 2 are identical"),
        (
            {**GOOD, "ranking": [0, 1, 1]},
            "'ranking' is not a permutation of 0..2: index 1 appears twice",
        ),
        ({**GOOD, "ranking": [0, 2]}, "'ranking' is not a permutation of 0..2: index 1 is missing"),
        (
            {**GOOD, "ranking": [0, 1, 5]},
            "'ranking' is not a permutation of 0..2: index 5 is out of range",
        ),
        ({**GOOD, "ranking": [[0, 1, 2]]}, "'ranking' ties all responses"),
        ({"prompt": "p", "responses": ["a", "b"]}, "missing column 'ranking'"),
        ({**GOOD, "responses": "abc"}, "'responses' must be a list, got str"),
        ({**GOOD, "responses": ["a", 3, "c"]}, "'responses[1]' must be a string"),
        ({**GOOD, "weight": -1}, "'weight' must be finite and not negative"),
    ],
)
def test_bad_listwise_rows_name_file_and_line(tmp_path, tokenizer, row, message):
    path = write_jsonl(tmp_path / "ranks.jsonl", [GOOD, row])
    with pytest.raises(DataError) as info:
        tokenize_rankings(read_records(path), Tokenization(tokenizer, 64, 32))
    assert f"{path}: line 2: {message}" in str(info.value)


def test_truncation_that_makes_responses_equal_is_refused(tmp_path, tokenizer):
    row = {"prompt": "p", "responses": ["abcdefgh1", "abcdefgh2"], "ranking": [1, 0]}
    path = write_jsonl(tmp_path / "ranks.jsonl", [row])
    with pytest.raises(
        DataError, match="line 1: responses 0 and 1 are identical within max_length=8"
    ):
        tokenize_rankings(read_records(path), Tokenization(tokenizer, 8, 2))


def test_the_engine_exits_2_on_a_bad_ranking(tmp_path, run_config, caplog):
    path = write_jsonl(tmp_path / "ranks.jsonl", [GOOD, GOOD, {**GOOD, "ranking": [2, 2, 0]}])
    config = run_config(path, loss_type="plackett_luce")
    assert engine("train", "--config", str(config)) == EXIT_BAD_INPUT
    assert f"{path}: line 3: 'ranking' is not a permutation" in caplog.text
    assert not (tmp_path / "out" / "checkpoint-1").exists()


WORDS = ("best", "good", "fair", "poor")


def synthetic_rankings(n: int, seed: int) -> list[dict]:
    """A learnable rule: each response starts with one of WORDS, in that order of quality,
    followed by the same random letters; the responses come shuffled; every fourth row ties
    the two middle ones."""
    rng = random.Random(seed)
    rows = []
    for r in range(n):
        prompt = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(4, 16)))
        tail = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8)))
        quality = list(range(len(WORDS)))
        rng.shuffle(quality)  # quality[i]: the word of response i
        responses = [f"{WORDS[q]} {tail}" for q in quality]
        by_quality = sorted(range(len(WORDS)), key=lambda i: quality[i])
        ranking: list = list(by_quality)
        if r % 4 == 3:
            ranking = [by_quality[0], [by_quality[1], by_quality[2]], by_quality[3]]
        rows.append({"prompt": prompt, "responses": responses, "ranking": ranking})
    return rows


def test_listwise_training_learns_a_ranking_rule(tmp_path, run_config):
    data = write_jsonl(tmp_path / "ranks.jsonl", synthetic_rankings(64, seed=3))
    config = run_config(
        data,
        loss_type="plackett_luce",
        beta=0.1,
        eval_fraction=0.25,
        epochs=3,
        eval_every=3,
        warmup_steps=2,
        learning_rate=1e-3,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    metrics = tmp_path / "out" / "metrics.jsonl"
    (reference,) = events(metrics, "reference")
    assert reference["cached"] is False and "not used in listwise mode" in reference["cache"]
    assert reference["forwards"] > 0 and reference["rankings"] == 64
    train, evals = events(metrics, "train"), events(metrics, "eval")
    # the policy starts as the reference: every reward is 0, the loss is log(4!) for a strict
    # ranking of 4 and log(4!/2) for one with a tie of two
    assert train[0]["reward_accuracy"] == 0.0 and train[0]["top1_accuracy"] == 0.0
    assert math.log(12) <= train[0]["loss"] <= math.log(24)
    assert evals[-1]["loss"] < evals[0]["loss"] < train[0]["loss"]
    assert evals[-1]["reward_accuracy"] > 0.85
    assert evals[-1]["top1_accuracy"] > 0.8
    assert evals[-1]["reward_margin"] > evals[0]["reward_margin"] > 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["eval"]["rankings"] == 16
    assert summary["train_rankings_per_second"] > 0


def test_a_rankings_batch_equals_separate_passes_and_bucketed_rows(tmp_path, tiny_model, tokenizer):
    from training.engine.data import collate_sequences
    from training.engine.listwise import collate_rankings
    from training.engine.logprobs import SequenceLogps
    from training.engine.modeling import load_causal_lm

    rows = [
        {"prompt": "abc", "responses": ["yes a", "no", "maybe bb"], "ranking": [0, 2, 1]},
        {"prompt": "d", "responses": ["x", "yy", "zzz", ""], "ranking": [[3, 1], 0, 2]},
    ]
    path = write_jsonl(tmp_path / "ranks.jsonl", rows)
    examples = tokenize_rankings(read_records(path), Tokenization(tokenizer, 64, 32))
    assert [e.k for e in examples] == [3, 4] and examples[1].groups == ((3, 1), (0,), (2,))
    model = load_causal_lm(str(tiny_model)).eval()
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        batch = collate_rankings(examples, pad)
        together, counts = SequenceLogps(model)(**batch)
        bucketed, _ = SequenceLogps(model, bucket_rows=4 * 2)(**batch)
        alone = torch.cat(
            [
                SequenceLogps(model)(**collate_sequences([e.prompt_ids], [r], pad))[0]
                for e in examples
                for r in e.response_ids
            ]
        )
    assert together.shape == (7,) and counts.tolist() == [
        len(r) for e in examples for r in e.response_ids
    ]
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(bucketed, together, atol=1e-4, rtol=1e-5)


def test_listwise_micro_batches_padding_free_and_reference_free(tmp_path, run_config):
    """One step of 6 rankings (K = 3 to 5 mixed) as one micro-batch, as 4 + 2 (unequal: a mean
    of micro-batch means would differ) and padding-free give the same losses; reference-free
    runs no reference pass."""
    rows = synthetic_rankings(6, seed=5)
    rows[1] = {**rows[1], "responses": rows[1]["responses"][:3], "ranking": [2, 0, 1]}
    rows[2] = {
        **rows[2],
        "responses": [*rows[2]["responses"], "extra z"],
        "ranking": [4, *rows[2]["ranking"]],
    }
    data = write_jsonl(tmp_path / "ranks.jsonl", rows)
    losses = {}
    for name, overrides in (
        ("one", {"micro_batch_size": 8}),
        ("split", {"micro_batch_size": 4}),
        ("packed", {"micro_batch_size": 4, "padding_free": True}),
    ):
        out = tmp_path / name
        config = run_config(
            data,
            name=f"{name}.json",
            out_dir=str(out),
            loss_type="plackett_luce",
            max_steps=2,
            length_bucketing=False,
            learning_rate=1.0,  # with Adam's epsilon 1 the update is close to linear in the
            adam_epsilon=1.0,  # gradient, so step 2's loss shows a wrongly weighted gradient
            max_grad_norm=None,
            **overrides,
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        losses[name] = [e["loss"] for e in events(out / "metrics.jsonl", "train")]
    assert len(losses["one"]) == 2
    for other in ("split", "packed"):
        assert max(abs(a - b) for a, b in zip(losses["one"], losses[other], strict=True)) < 1e-5
    out = tmp_path / "free"
    config = run_config(
        data,
        name="free.json",
        out_dir=str(out),
        loss_type="plackett_luce",
        max_steps=1,
        reference_free=True,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    assert not events(out / "metrics.jsonl", "reference")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_forwards"] == 0 and math.isfinite(summary["train"]["loss"])


def test_rankings_to_pairs_command_feeds_a_pair_loss(tmp_path, run_config, capsys, caplog):
    rows = synthetic_rankings(8, seed=7)  # rows 4 and 8 tie their two middle responses
    rows[0] = {**rows[0], "id": "r-a", "weight": 0.5}
    src = write_jsonl(tmp_path / "ranks.jsonl", rows)
    dst = tmp_path / "pairs.jsonl"
    assert engine("rankings-to-pairs", str(src), str(dst), "--policy", "all") == EXIT_OK
    pairs = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(pairs) == 6 * 6 + 2 * 5 and capsys.readouterr().out.strip() == str(len(pairs))
    first = [p for p in pairs if p["ranking_id"] == "r-a"]
    assert len(first) == 6 and all(p["weight"] == 0.5 for p in first)
    assert [p["ranking_id"] for p in pairs if p["ranking_id"] != "r-a"][:1] == [2]
    assert all(p["chosen"].split()[0] in WORDS for p in pairs)
    assert all(
        WORDS.index(p["chosen"].split()[0]) < WORDS.index(p["rejected"].split()[0]) for p in pairs
    )
    assert engine("rankings-to-pairs", str(src), str(dst), "--policy", "adjacent") == EXIT_OK
    assert len(dst.read_text().splitlines()) == 6 * 3 + 2 * 4
    config = run_config(dst, loss_type="sigmoid", max_steps=1)
    assert engine("train", "--config", str(config)) == EXIT_OK
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], {**rows[1], "ranking": [0, 1, 2]}])
    assert engine("rankings-to-pairs", str(bad), str(tmp_path / "none.jsonl")) == EXIT_BAD_INPUT
    assert f"{bad}: line 2: 'ranking' is not a permutation of 0..3: index 3 is missing" in (
        caplog.text
    )
    assert not (tmp_path / "none.jsonl").exists()


def test_a_resumed_listwise_run_gives_the_same_losses(tmp_path, run_config):
    """Resuming a full fine-tune recomputes the reference from the starting weights (there is
    no cache in listwise mode), not from the resumed policy: the losses after the resume point
    equal those of the uninterrupted run exactly."""
    import shutil

    data = write_jsonl(tmp_path / "ranks.jsonl", synthetic_rankings(12, seed=9))
    common = {"loss_type": "plackett_luce", "batch_size": 4, "micro_batch_size": 2}
    common.update(max_steps=5, save_every=2, warmup_steps=1)
    full = run_config(data, name="full.json", out_dir=str(tmp_path / "full"), **common)
    assert engine("train", "--config", str(full)) == EXIT_OK
    full_losses = [e["loss"] for e in events(tmp_path / "full" / "metrics.jsonl", "train")]
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-000002", part / "checkpoint-000002")
    resumed = run_config(data, name="part.json", out_dir=str(part), **common)
    assert engine("train", "--config", str(resumed), "--resume") == EXIT_OK
    resumed_events = events(part / "metrics.jsonl", "train")
    assert [e["step"] for e in resumed_events] == [3, 4, 5]
    assert [e["loss"] for e in resumed_events] == full_losses[2:]
