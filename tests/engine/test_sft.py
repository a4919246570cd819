"""Supervised fine-tuning lowers the held-out negative log-likelihood."""

from __future__ import annotations

import torch

from training.engine import EXIT_OK
from training.engine.data import Tokenization, collate_sft, read_records, tokenize_sft
from training.engine.logprobs import SequenceLogps
from training.engine.modeling import load_causal_lm, load_tokenizer

from .conftest import engine, events, synthetic_pairs, write_jsonl


def test_sft_lowers_the_nll_of_held_out_demonstrations(tmp_path, tiny_model, run_config):
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [{"prompt": r["prompt"], "completion": r["chosen"]} for r in synthetic_pairs(64, seed=2)],
    )
    held_out = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"prompt": r["prompt"], "completion": r["chosen"]} for r in synthetic_pairs(16, seed=3)],
    )
    tokenizer = load_tokenizer(str(tiny_model))
    examples = tokenize_sft(read_records(held_out), Tokenization(tokenizer, 128, 64))
    with torch.no_grad():
        logps, counts = SequenceLogps(load_causal_lm(str(tiny_model)))(**collate_sft(examples, 0))
    nll_before = float(-logps.sum() / counts.sum())

    config = run_config(train, eval_data=str(held_out), epochs=2, learning_rate=3e-3, log_every=4)
    assert engine("sft", "--config", str(config)) == EXIT_OK
    (final_eval,) = events(tmp_path / "out" / "metrics.jsonl", "eval")
    assert final_eval["loss"] < nll_before - 1.0
    assert final_eval["response_tokens"] == float(counts.sum())
    first_train = events(tmp_path / "out" / "metrics.jsonl", "train")[0]
    assert "examples_per_second" in first_train and "perplexity" in first_train


def test_sft_accepts_the_chosen_column_of_a_preference_snapshot(tmp_path, run_config):
    data = write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs(8))
    config = run_config(data, max_steps=1)
    assert engine("sft", "--config", str(config)) == EXIT_OK
