"""Padding-free (packed) batches and bucketed shapes give the padded batch's log-probs."""

from __future__ import annotations

import pytest
import torch

from training.engine import EXIT_OK
from training.engine.data import PairExample, collate_pairs
from training.engine.logprobs import SequenceLogps
from training.engine.metrics import read_metrics
from training.engine.modeling import load_causal_lm
from training.engine.packing import bucket_batch, bucket_length, pack

from .conftest import engine, events


def random_examples(n: int, seed: int, vocab: int = 200) -> list[PairExample]:
    gen = torch.Generator().manual_seed(seed)

    def ids(lo: int, hi: int) -> tuple[int, ...]:
        length = int(torch.randint(lo, hi, (1,), generator=gen))
        return tuple(torch.randint(7, vocab, (length,), generator=gen).tolist())

    # lengths vary a lot, so the padded batch really has padding
    return [PairExample(i, (1, *ids(2, 30)), ids(1, 25), ids(1, 25), False) for i in range(n)]


@pytest.fixture(scope="module")
def model(tiny_model):
    m = load_causal_lm(str(tiny_model))
    m.eval()
    return m


def test_pack_drops_padding_and_restarts_positions():
    input_ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    label_mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)
    packed = pack(input_ids, attention_mask, label_mask)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert packed.label_mask.tolist() == [False, True, True, False, True]
    assert packed.sequence.tolist() == [0, 0, 0, 1, 1]
    assert packed.rows == 2


def test_packed_logps_equal_padded_ones_per_example(model):
    batch = collate_pairs(random_examples(6, seed=3), pad_id=0)
    assert (batch["attention_mask"] == 0).any()
    padded, padded_counts = SequenceLogps(model, chunk_size=16)(**batch)
    packed, packed_counts = SequenceLogps(model, chunk_size=16, padding_free=True)(**batch)
    assert packed_counts.tolist() == padded_counts.tolist()
    torch.testing.assert_close(packed, padded, rtol=0, atol=2e-5)


def test_packed_gradients_equal_padded_ones(tiny_model):
    batch = collate_pairs(random_examples(4, seed=4), pad_id=0)
    grads = []
    for padding_free in (False, True):
        m = load_causal_lm(str(tiny_model))
        logps, _ = SequenceLogps(m, chunk_size=16, padding_free=padding_free)(**batch)
        (logps * torch.linspace(-1, 1, logps.shape[0])).sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_bucketed_batches_keep_every_rows_logps(model):
    batch = collate_pairs(random_examples(3, seed=5), pad_id=0)
    width = batch["input_ids"].shape[1]
    ids, _mask, labels = bucket_batch(**batch, rows=8)
    assert ids.shape == (8, bucket_length(width)) and bucket_length(width) % 64 == 0
    assert not labels[6:].any()  # the added rows score nothing
    plain, plain_counts = SequenceLogps(model, chunk_size=16)(**batch)
    bucketed, counts = SequenceLogps(model, chunk_size=16, bucket_rows=8)(**batch)
    assert bucketed.shape == plain.shape and counts.tolist() == plain_counts.tolist()
    torch.testing.assert_close(bucketed, plain, rtol=0, atol=2e-5)


def test_a_padding_free_run_trains_like_a_padded_one(tmp_path, pairs_file, run_config):
    data = pairs_file(16)
    losses = []
    for padding_free in (False, True):
        out = tmp_path / f"pf{int(padding_free)}"
        config = run_config(
            data,
            name=f"pf{int(padding_free)}.json",
            out_dir=str(out),
            max_steps=3,
            padding_free=padding_free,
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        losses.append([e["loss"] for e in events(out / "metrics.jsonl", "train")])
        (start,) = [e for e in read_metrics(out / "metrics.jsonl") if e["event"] == "start"]
        assert start["config"]["padding_free"] is padding_free
    assert len(losses[0]) == 3
    assert max(abs(a - b) for a, b in zip(*losses, strict=True)) < 1e-5
