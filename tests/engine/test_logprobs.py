"""Chunked per-token log-probs, the concatenated pass, and what counts towards a sum."""

from __future__ import annotations

import pytest
import torch

from training.engine.data import PairExample, collate_pairs, collate_sequences
from training.engine.logprobs import SequenceLogps, chunked_token_logps, naive_sequence_logps
from training.engine.modeling import load_causal_lm


@pytest.fixture(scope="module")
def model(tiny_model):
    m = load_causal_lm(str(tiny_model))
    m.eval()
    return m


def random_examples(n: int, seed: int, vocab: int = 200) -> list[PairExample]:
    gen = torch.Generator().manual_seed(seed)

    def ids(lo: int, hi: int) -> tuple[int, ...]:
        length = int(torch.randint(lo, hi, (1,), generator=gen))
        return tuple((torch.randint(7, vocab, (length,), generator=gen)).tolist())

    return [PairExample(i, (1, *ids(2, 12)), ids(1, 10), ids(1, 10), False) for i in range(n)]


def test_chunked_logps_and_gradients_equal_a_full_log_softmax():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(45, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 300, (45,), generator=gen)

    chunked = chunked_token_logps(hidden, weight, None, targets, chunk_size=8)
    (chunked * torch.linspace(-1, 1, 45, dtype=torch.float64)).sum().backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    naive = (hidden @ weight.T).log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    (naive * torch.linspace(-1, 1, 45, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(chunked, naive, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[0], hidden.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1], weight.grad, rtol=0, atol=1e-12)


def test_chunked_sequence_logps_equal_naive_ones_on_the_model(model):
    batch = collate_pairs(random_examples(5, seed=1), pad_id=0)
    chunked, counts = SequenceLogps(model, chunk_size=7)(**batch)
    naive = naive_sequence_logps(model, **batch)
    torch.testing.assert_close(chunked, naive, rtol=0, atol=1e-5)
    assert counts.tolist() == batch["label_mask"].sum(1).tolist()


def test_chunked_gradients_equal_naive_ones_on_the_model(tiny_model):
    batch = collate_pairs(random_examples(3, seed=2), pad_id=0)
    grads = []
    for use_chunked in (True, False):
        m = load_causal_lm(str(tiny_model))
        if use_chunked:
            logps, _ = SequenceLogps(m, chunk_size=5)(**batch)
        else:
            logps = naive_sequence_logps(m, **batch)
        logps.sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-4, atol=1e-5, msg=name)


def test_one_concatenated_pass_equals_two_separate_passes(model):
    examples = random_examples(4, seed=3)
    k = len(examples)
    wrapper = SequenceLogps(model)
    together, _ = wrapper(**collate_pairs(examples, pad_id=0))
    chosen, _ = wrapper(
        **collate_sequences([e.prompt_ids for e in examples], [e.chosen_ids for e in examples], 0)
    )
    rejected, _ = wrapper(
        **collate_sequences([e.prompt_ids for e in examples], [e.rejected_ids for e in examples], 0)
    )
    torch.testing.assert_close(together[:k], chosen, rtol=0, atol=1e-5)
    torch.testing.assert_close(together[k:], rejected, rtol=0, atol=1e-5)


def test_a_pairs_logps_ignore_its_batch_mates_and_its_padding(model):
    wrapper = SequenceLogps(model)
    target = random_examples(1, seed=4)[0]
    alone, _ = wrapper(**collate_pairs([target], pad_id=0))
    long_mate = PairExample(9, (1, *range(10, 60)), tuple(range(60, 100)), (70, 71), False)
    for mates in (random_examples(3, seed=5), [long_mate]):
        together, _ = wrapper(**collate_pairs([target, *mates], pad_id=0))
        k = 1 + len(mates)
        torch.testing.assert_close(together[[0, k]], alone, rtol=0, atol=1e-5)


def test_prompt_tokens_and_padding_never_count(model):
    wrapper = SequenceLogps(model)
    prompt, response = (1, 40, 41, 42), (50, 51, 2)
    batch = collate_sequences([prompt], [response], pad_id=0)
    base, counts = wrapper(**batch)
    assert counts.item() == len(response)

    # the sum runs over the response tokens' own log-probs only
    logits = model(input_ids=batch["input_ids"]).logits.float().log_softmax(-1)[0]
    start = len(prompt)
    by_hand = sum(logits[start - 1 + j, t] for j, t in enumerate(response))
    torch.testing.assert_close(base[0], by_hand, rtol=0, atol=1e-5)

    # padding: other pad ids and more padding change nothing
    padded = collate_sequences([prompt, (1,) * 20], [response, (3,)], pad_id=0)
    repadded = collate_sequences([prompt, (1,) * 20], [response, (3,)], pad_id=123)
    a, _ = wrapper(**padded)
    b, _ = wrapper(**repadded)
    torch.testing.assert_close(a[0], base[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(b[0], base[0], rtol=0, atol=1e-5)


def test_collated_label_mask_covers_exactly_the_responses():
    batch = collate_sequences([(1, 7), (1,)], [(8, 2), (9, 2)], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 7, 8, 2], [1, 9, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["label_mask"].int().tolist() == [[0, 0, 1, 1], [0, 1, 1, 0]]


def test_under_bf16_autocast_log_probs_stay_float32_and_close():
    gen = torch.Generator().manual_seed(6)
    hidden = torch.randn(20, 32, generator=gen, requires_grad=True)
    weight = torch.randn(100, 32, generator=gen, requires_grad=True)
    targets = torch.randint(0, 100, (20,), generator=gen)
    exact = chunked_token_logps(hidden, weight, None, targets, chunk_size=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = chunked_token_logps(hidden, weight, None, targets, chunk_size=6)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=0.05, atol=0.3)
    mixed.sum().backward()
    assert hidden.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0
