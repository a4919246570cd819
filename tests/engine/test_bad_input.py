"""Bad data and bad configs get a clear error naming the row or key, before any model loads."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from training.engine import EXIT_BAD_INPUT
from training.engine.config import ConfigError, DPOConfig, config_from_dict, load_config
from training.engine.data import DataError, Record, Tokenization, read_records, tokenize_pairs
from training.engine.modeling import load_causal_lm

from .conftest import engine, events, write_jsonl

GOOD = {"prompt": "p", "chosen": "yes", "rejected": "no"}


def tokenize(rows, tokenizer, max_length=64, max_prompt_length=32):
    tokenization = Tokenization(tokenizer, max_length, max_prompt_length)
    return tokenize_pairs(
        [Record(f"line {i}", row) for i, row in enumerate(rows, start=1)], tokenization
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "chosen": "yes"}, "line 2: missing column 'rejected'"),
        (
            {"prompt": "p", "chosen": "same", "rejected": "same"},
            "line 2: 'chosen' and 'rejected' are identical",
        ),
        ({"prompt": "p", "chosen": 3, "rejected": "no"}, "line 2: 'chosen' must be a string"),
        (
            {"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"},
            "line 2: 'prompt' message 0",
        ),
        (
            {"prompt": "p", "chosen": "bad \ud800 text", "rejected": "no"},
            "line 2: 'chosen' holds undecodable text",
        ),
        (
            {"prompt": [{"role": "user", "text": "q"}], "chosen": "a", "rejected": "b"},
            "line 2: 'prompt' message 0 must be an object with 'role' and 'content'",
        ),
        (
            {"prompt": "p", "chosen": [{"content": "a"}], "rejected": "b"},
            "line 2: 'chosen' message 0 must be an object with 'role' and 'content'",
        ),
        ({"prompt": "p", "chosen": ["a"], "rejected": "b"}, "line 2: 'chosen' message 0 must"),
        (
            {"prompt": [{"role": "user", "content": 5}], "chosen": "a", "rejected": "b"},
            "line 2: 'prompt' message 0 content must be a string",
        ),
        ({"prompt": None, "chosen": "a", "rejected": "b"}, "line 2: missing column 'prompt'"),
        ({**GOOD, "weight": "1"}, "line 2: 'weight' must be a number, got str"),
        ({**GOOD, "weight": True}, "line 2: 'weight' must be a number, got bool"),
        ({**GOOD, "weight": -0.5}, "line 2: 'weight' must be finite and not negative"),
        ({**GOOD, "weight": float("nan")}, "line 2: 'weight' must be finite"),
        ({**GOOD, "weight": None}, "line 2: 'weight' is null"),
    ],
)
def test_each_bad_row_is_named(tokenizer, row, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        tokenize([GOOD, row], tokenizer)


def test_a_pair_that_cannot_fit_even_truncated_is_named(tokenizer):
    row = {
        "prompt": "p" * 50,
        "chosen": "same start " * 5 + "A",
        "rejected": "same start " * 5 + "B",
    }
    with pytest.raises(DataError, match="line 2: the pair cannot fit"):
        tokenize([GOOD, row], tokenizer, max_length=40, max_prompt_length=20)


def test_invalid_utf8_and_invalid_json_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="line 2: undecodable text"):
        read_records(path)
    path.write_text(json.dumps(GOOD) + "\n\n{not json\n")
    with pytest.raises(DataError, match="line 3: invalid JSON"):
        read_records(path)


def test_chat_rows_need_a_chat_template(tokenizer):
    tokenization = Tokenization(tokenizer, 64, 32)
    tokenization.has_chat_template = False
    row = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match="line 1: the row is a chat"):
        tokenize_pairs([Record("line 1", row)], tokenization)


def test_unknown_keys_and_bad_values_are_config_errors(tmp_path):
    base = {"data": "d.jsonl", "model": "m", "out_dir": "o"}
    with pytest.raises(ConfigError, match="unknown config key"):
        config_from_dict(DPOConfig, {**base, "learning_rat": 1e-6})
    with pytest.raises(ConfigError, match="missing required config key"):
        config_from_dict(DPOConfig, {"data": "d.jsonl"})
    with pytest.raises(ConfigError, match="beta: must be positive"):
        config_from_dict(DPOConfig, {**base, "beta": 0})
    with pytest.raises(ConfigError, match="loss_type: expected one of"):
        config_from_dict(DPOConfig, {**base, "loss_type": "dpo"})
    with pytest.raises(ConfigError, match="shuffle: expected bool"):
        config_from_dict(DPOConfig, {**base, "shuffle": "no"})
    with pytest.raises(ConfigError, match="batch_size: expected int"):
        config_from_dict(DPOConfig, {**base, "batch_size": "8"})
    with pytest.raises(ConfigError, match="multiple of micro_batch_size"):
        config_from_dict(DPOConfig, {**base, "batch_size": 10, "micro_batch_size": 4})
    with pytest.raises(ConfigError, match="max_prompt_length"):
        config_from_dict(DPOConfig, {**base, "max_length": 32, "max_prompt_length": 32})
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("data: d.jsonl\nmodel: m\nout_dir: o\nbeta: 0.2\nlearning_rate: 1\n")
    config = load_config(DPOConfig, yaml_file)
    assert config.beta == 0.2 and config.learning_rate == 1


def test_the_command_line_rejects_bad_input_before_loading_a_model(tmp_path, run_config):
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"prompt": "p", "chosen": "x"}])
    # the model path does not exist: reaching it would be a different error
    config = run_config(data, model=str(tmp_path / "no-such-model"), bogus=1)
    assert engine("train", "--config", str(config)) == EXIT_BAD_INPUT
    assert not (tmp_path / "out").exists()


def test_a_bad_row_fails_the_run_with_an_error_event(tmp_path, run_config):
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"prompt": "p", "chosen": "x"}])
    config = run_config(data)
    assert engine("train", "--config", str(config)) == EXIT_BAD_INPUT
    (error,) = events(tmp_path / "out" / "metrics.jsonl", "error")
    assert "line 2: missing column 'rejected'" in error["message"]
    assert error["error_type"] == "DataError"


def test_a_chat_message_without_content_exits_2_naming_the_file_and_line(tmp_path, run_config):
    """The issue's case: a message with no 'content' key (it was a KeyError, exit 1)."""
    chat = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}
    bad = {"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}
    data = write_jsonl(tmp_path / "chat.jsonl", [chat, chat, bad])
    assert engine("train", "--config", str(run_config(data))) == EXIT_BAD_INPUT
    (error,) = events(tmp_path / "out" / "metrics.jsonl", "error")
    assert f"{data}: line 3: 'prompt' message 0" in error["message"]
    assert "(no 'content')" in error["message"]


def test_a_chat_template_that_raises_is_a_row_error(tokenizer):
    """A template's own checks (here: roles must alternate) name the row instead of failing
    with a jinja traceback."""
    tokenization = Tokenization(tokenizer, 64, 32)
    tokenization.tokenizer = copy.copy(tokenizer)
    tokenization.tokenizer.chat_template = (
        "{% for m in messages %}{% if loop.index0 % 2 == 0 and m['role'] != 'user' %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    row = {"prompt": [{"role": "assistant", "content": "q"}], "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match="line 1: the chat template cannot render the row"):
        tokenize_pairs([Record("line 1", row)], tokenization)


def test_weights_are_read_and_can_be_ignored(tokenizer, tmp_path):
    rows = [{**GOOD, "weight": 2.5}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    data = write_jsonl(tmp_path / "w.jsonl", rows)
    tokenization = Tokenization(tokenizer, 64, 32)
    weighted = tokenize_pairs(read_records(data), tokenization)
    assert [e.weight for e in weighted] == [2.5, 1.0]
    plain = tokenize_pairs(read_records(data), tokenization, weights=False)
    assert [e.weight for e in plain] == [1.0, 1.0]


def test_all_zero_weights_are_refused(tmp_path, run_config):
    data = write_jsonl(tmp_path / "d.jsonl", [{**GOOD, "weight": 0}, {**GOOD, "weight": 0.0}])
    assert engine("train", "--config", str(run_config(data))) == EXIT_BAD_INPUT
    (error,) = events(tmp_path / "out" / "metrics.jsonl", "error")
    assert f"{data}: every training pair has 'weight' 0" in error["message"]


def test_a_pickle_only_model_is_refused_with_exit_2(tmp_path, tiny_model, pairs_file, run_config):
    """A model directory with pytorch_model.bin and no safetensors: a clear message, no
    traceback, before any data is read (it was an uncaught transformers OSError, exit 1)."""
    model_dir = tmp_path / "pickled"
    shutil.copytree(tiny_model, model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    config = run_config(pairs_file(8), model=str(model_dir))
    assert engine("train", "--config", str(config)) == EXIT_BAD_INPUT
    (error,) = events(tmp_path / "out" / "metrics.jsonl", "error")
    assert "pytorch_model.bin" in error["message"]
    assert "only safetensors are loaded" in error["message"]
    with pytest.raises(ConfigError, match="only safetensors are loaded"):
        load_causal_lm(str(model_dir))
    assert (
        engine(
            "sample",
            "--model",
            str(model_dir),
            "--prompts",
            str(pairs_file(2)),
            "--out",
            str(tmp_path / "s.jsonl"),
        )
        == EXIT_BAD_INPUT
    )


def test_a_missing_model_is_exit_2(tmp_path, pairs_file, run_config):
    config = run_config(pairs_file(8), model=str(tmp_path / "no-such-model"))
    assert engine("train", "--config", str(config)) == EXIT_BAD_INPUT
    (error,) = events(tmp_path / "out" / "metrics.jsonl", "error")
    assert "no-such-model" in error["message"]


def test_an_empty_response_is_a_pair_that_ends_at_once(tokenizer):
    """An answer that stops at once is informative: an empty (or blank) side is its end
    token alone, in plain and chat rows alike."""
    rows = [
        {"prompt": "p", "chosen": "a real answer", "rejected": ""},
        {"prompt": "q", "chosen": "  ", "rejected": "no"},
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": ""}],
        },
    ]
    examples = tokenize(rows[:2], tokenizer)
    assert examples[0].rejected_ids == (tokenizer.eos_token_id,)
    assert examples[1].chosen_ids[-1] == tokenizer.eos_token_id
    assert tokenize(rows[2:], tokenizer)[0].rejected_ids  # the end-of-turn marker
