"""The loss menu in real runs on the tiny model: per-pair weights, RPO, SimPO without a
reference, micro-batching, and the no-shuffle data order."""

from __future__ import annotations

import math

import pytest
import torch

from training.engine import EXIT_OK
from training.engine.data import (
    Tokenization,
    collate_sequences,
    epoch_batches,
    read_records,
    tokenize_pairs,
)
from training.engine.logprobs import naive_sequence_logps
from training.engine.modeling import load_causal_lm, load_tokenizer

from .conftest import engine, events, synthetic_pairs, write_jsonl


def weighted_rows(n: int) -> list[dict]:
    rows = synthetic_pairs(n, seed=7)
    for i, row in enumerate(rows):
        row["weight"] = [0.5, 2.0, 0.0, 1.25][i % 4]
    return rows


def float64_logps(model_dir, data):
    """Summed response log-probs of every pair under the untrained model, in float64."""
    tokenizer = load_tokenizer(str(model_dir))
    examples = tokenize_pairs(read_records(data), Tokenization(tokenizer, 128, 64))
    prompts = [e.prompt_ids for e in examples]
    model = load_causal_lm(str(model_dir)).double()
    with torch.no_grad():
        pc = naive_sequence_logps(
            model, **collate_sequences(prompts, [e.chosen_ids for e in examples], 0)
        )
        pr = naive_sequence_logps(
            model, **collate_sequences(prompts, [e.rejected_ids for e in examples], 0)
        )
    n_w = [len(e.chosen_ids) for e in examples]
    n_l = [len(e.rejected_ids) for e in examples]
    return pc.tolist(), pr.tolist(), n_w, n_l, [e.weight for e in examples]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def test_a_weighted_rpo_step_equals_the_float64_weighted_mean(tmp_path, tiny_model, run_config):
    """Reference-free DPO + 0.5 * sft over weighted pairs, one step of 8 pairs cut into
    micro-batches of 2: sum_i w_i L_i / sum_i w_i + 0.5 * sum_i w_i NLL_i / sum_i w_i n_i."""
    data = write_jsonl(tmp_path / "w.jsonl", weighted_rows(8))
    beta = 0.5
    config = run_config(
        data,
        batch_size=8,
        micro_batch_size=2,
        max_steps=1,
        beta=beta,
        reference_free=True,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 0.5],
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    (first,) = events(tmp_path / "out" / "metrics.jsonl", "train")
    assert not events(tmp_path / "out" / "metrics.jsonl", "reference")

    pc, pr, n_w, _n_l, w = float64_logps(tiny_model, data)
    dpo = sum(wi * -log_sigmoid(beta * (a - b)) for wi, a, b in zip(w, pc, pr, strict=True))
    nll = sum(wi * -a for wi, a in zip(w, pc, strict=True))
    tokens = sum(wi * n for wi, n in zip(w, n_w, strict=True))
    want = dpo / sum(w) + 0.5 * nll / tokens
    assert first["loss"] == pytest.approx(want, abs=1e-5, rel=0)
    unweighted = sum(-log_sigmoid(beta * (a - b)) for a, b in zip(pc, pr, strict=True)) / 8
    assert abs(unweighted + 0.5 * sum(-a for a in pc) / sum(n_w) - want) > 1e-3


def test_weighted_losses_do_not_depend_on_the_micro_batches(tmp_path, run_config):
    """The weighted mean is over the whole step, not a mean of micro-batch means: micro-batches
    of 2 (whose weight sums differ) and one of 8 train the same model."""
    data = write_jsonl(tmp_path / "w.jsonl", weighted_rows(16))
    runs = []
    for micro in (2, 8):
        config = run_config(
            data,
            name=f"m{micro}.json",
            out_dir=str(tmp_path / f"m{micro}"),
            batch_size=8,
            micro_batch_size=micro,
            max_steps=3,
            loss_type=["ipo", "sft"],
            loss_weights=[1.0, 0.2],
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        runs.append([e["loss"] for e in events(tmp_path / f"m{micro}" / "metrics.jsonl", "train")])
    assert runs[0] == pytest.approx(runs[1], abs=1e-6, rel=1e-6)  # float32 rounding
    assert len(set(runs[0])) == 3  # the model moved


def test_simpo_runs_no_reference_and_matches_its_formula(tmp_path, tiny_model, run_config):
    data = write_jsonl(tmp_path / "d.jsonl", synthetic_pairs(8, seed=2))
    beta, gamma = 2.0, 0.4
    config = run_config(
        data,
        batch_size=8,
        micro_batch_size=4,
        max_steps=1,
        loss_type="simpo",
        beta=beta,
        simpo_gamma=gamma,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    metrics = tmp_path / "out" / "metrics.jsonl"
    assert not events(metrics, "reference")  # no reference pass, cached or not
    assert not (tmp_path / "out" / "reference_cache").exists()
    (first,) = events(metrics, "train")
    pc, pr, n_w, n_l, _ = float64_logps(tiny_model, data)
    losses = [
        -log_sigmoid(beta * (a / nw - b / nl) - gamma)
        for a, b, nw, nl in zip(pc, pr, n_w, n_l, strict=True)
    ]
    assert first["loss"] == pytest.approx(sum(losses) / 8, abs=1e-5, rel=0)
    want_chosen = sum(beta * a / nw for a, nw in zip(pc, n_w, strict=True)) / 8
    assert first["chosen_reward"] == pytest.approx(want_chosen, abs=1e-5, rel=0)


def test_without_shuffle_steps_take_the_rows_in_file_order(tmp_path, run_config):
    lengths = [5, 50, 7, 9, 30, 2, 8, 1, 4, 12]
    assert epoch_batches(lengths, 4, seed=3, epoch=2, bucketing=True, shuffle=False) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    data = write_jsonl(tmp_path / "d.jsonl", synthetic_pairs(24, seed=5))
    losses = {}
    for shuffle in (False, True):
        for seed in (0, 1):
            name = f"{shuffle}-{seed}"
            config = run_config(
                data,
                name=f"{name}.json",
                out_dir=str(tmp_path / name),
                batch_size=4,
                micro_batch_size=4,
                max_steps=4,
                shuffle=shuffle,
                seed=seed,
            )
            assert engine("train", "--config", str(config)) == EXIT_OK
            train = events(tmp_path / name / "metrics.jsonl", "train")
            losses[shuffle, seed] = [(e["loss"], e["chosen_logps"]) for e in train]
    # the seed orders the data only when shuffling
    assert losses[False, 0] == losses[False, 1]
    assert losses[True, 0] != losses[True, 1]
