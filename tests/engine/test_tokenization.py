"""Tokenising prompts and responses separately, chat templates, truncation, bucketing."""

from __future__ import annotations

from transformers import AutoTokenizer

from training.engine.data import (
    Record,
    Tokenization,
    epoch_batches,
    micro_batches,
    tokenize_pairs,
)
from training.engine.tiny import END_OF_TURN


def test_tiny_tokenizer_loads_without_remote_code_and_round_trips_bytes(tiny_model):
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    text = "héllo, wörld ✓ \n\t"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_prompt_is_an_exact_prefix_with_one_bos_and_an_end_of_turn(tokenizer):
    tokenization = Tokenization(tokenizer, max_length=512, max_prompt_length=256)
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]
    reply = [{"role": "assistant", "content": "hi there"}]
    prompt_ids, (response_ids,) = tokenization.encode("line 1", prompt, [reply])

    full = tokenizer.apply_chat_template(prompt + reply, tokenize=False)
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert prompt_ids + response_ids == full_ids
    sequence = prompt_ids + response_ids
    assert sequence.count(tokenizer.bos_token_id) == 1 and sequence[0] == tokenizer.bos_token_id
    assert response_ids[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert tokenizer.decode(response_ids, skip_special_tokens=True) == "hi there"
    # the prompt ends with the opened assistant turn, so nothing of it is scored
    assert tokenizer.convert_ids_to_tokens(prompt_ids[-1]) == "<|assistant|>"


def test_string_responses_with_a_chat_prompt_become_assistant_messages(tokenizer):
    tokenization = Tokenization(tokenizer, max_length=512, max_prompt_length=256)
    prompt = [{"role": "user", "content": "q"}]
    a = tokenization.encode("line 1", prompt, ["answer"])
    b = tokenization.encode("line 1", prompt, [[{"role": "assistant", "content": "answer"}]])
    assert a == b


def test_plain_text_gets_one_bos_and_responses_end_with_eos(tokenizer):
    tokenization = Tokenization(tokenizer, max_length=512, max_prompt_length=256)
    prompt_ids, (chosen, rejected) = tokenization.encode("line 1", "2+2=", ["4", "5"])
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert (prompt_ids + chosen).count(tokenizer.bos_token_id) == 1
    assert chosen[-1] == rejected[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(prompt_ids + chosen, skip_special_tokens=True) == "2+2=4"


def test_truncation_keeps_the_prompt_end_and_response_start_and_is_counted(tokenizer):
    tokenization = Tokenization(tokenizer, max_length=20, max_prompt_length=8)
    rows = [
        Record(
            "line 1",
            {
                "prompt": "abcdefghijklmnop",
                "chosen": "ABCDEFGHIJKLMNOP",
                "rejected": "XBCDEFGHIJKLMNOP",
            },
        ),
        Record("line 2", {"prompt": "short", "chosen": "yes", "rejected": "no"}),
    ]
    first, second = tokenize_pairs(rows, tokenization)
    assert first.truncated and not second.truncated
    assert len(first.prompt_ids) == 8 and first.prompt_ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(first.prompt_ids, skip_special_tokens=True) == "jklmnop"
    assert len(first.prompt_ids) + len(first.chosen_ids) == 20
    assert tokenizer.decode(first.chosen_ids) == "ABCDEFGHIJKL"
    assert tokenizer.decode(first.rejected_ids) == "XBCDEFGHIJKL"


def test_bucketed_batches_cover_every_row_once_and_are_reproducible():
    lengths = [(i * 37) % 101 for i in range(203)]
    batches = epoch_batches(lengths, 8, seed=3, epoch=1, bucketing=True)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(203))
    assert batches == epoch_batches(lengths, 8, seed=3, epoch=1, bucketing=True)
    assert batches != epoch_batches(lengths, 8, seed=3, epoch=2, bucketing=True)
    # bucketing cuts padding: the spread of lengths inside a batch is small
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    unbucketed = epoch_batches(lengths, 8, seed=3, epoch=1, bucketing=False)
    spread_unbucketed = sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in unbucketed
    )
    assert spread < spread_unbucketed / 3


def test_micro_batches_split_a_step_between_processes_without_overlap():
    lengths = list(range(16))
    parts = [list(micro_batches(range(16), lengths, 3, rank=r, world=2)) for r in (0, 1)]
    seen = sorted(i for part in parts for mb in part for i in mb)
    assert seen == list(range(16))
    assert all(len(mb) <= 3 for part in parts for mb in part)
