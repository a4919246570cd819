"""DPO training end to end on the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.engine import EXIT_OK
from training.engine.data import Tokenization, collate_sequences, read_records, tokenize_pairs
from training.engine.logprobs import naive_sequence_logps
from training.engine.modeling import load_causal_lm, load_tokenizer

from .conftest import engine, events, synthetic_pairs, write_jsonl


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_first_step_loss_is_ln2_when_the_policy_is_the_reference(tmp_path, pairs_file, run_config):
    config = run_config(pairs_file(16), max_steps=1)
    assert engine("train", "--config", str(config)) == EXIT_OK
    (first,) = events(tmp_path / "out" / "metrics.jsonl", "train")
    assert abs(first["loss"] - math.log(2)) < 1e-5
    assert first["reward_margin"] == 0.0 or abs(first["reward_margin"]) < 1e-6
    for key in (
        "step",
        "total_steps",
        "epoch",
        "eta_seconds",
        "reward_accuracy",
        "chosen_reward",
        "rejected_reward",
        "chosen_logps",
        "rejected_logps",
        "grad_norm",
        "learning_rate",
        "tokens_per_second",
        "pairs_per_second",
    ):
        assert key in first, key


def test_first_steps_match_an_independent_implementation(
    tmp_path, tiny_model, pairs_file, run_config
):
    """Full-batch steps: naive full log-softmax, separate chosen/rejected passes, the loss in
    float64 from DPO.md, and torch's AdamW, against the engine's metrics."""
    data = pairs_file(8)
    beta, lr, steps = 0.5, 1e-3, 3
    config = run_config(
        data,
        batch_size=8,
        micro_batch_size=4,
        beta=beta,
        learning_rate=lr,
        max_steps=steps,
        lr_schedule="constant",
        max_grad_norm=None,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    ours = [e["loss"] for e in events(tmp_path / "out" / "metrics.jsonl", "train")]

    tokenizer = load_tokenizer(str(tiny_model))
    examples = tokenize_pairs(read_records(data), Tokenization(tokenizer, 128, 64))
    prompts = [e.prompt_ids for e in examples]
    chosen = collate_sequences(prompts, [e.chosen_ids for e in examples], 0)
    rejected = collate_sequences(prompts, [e.rejected_ids for e in examples], 0)
    model = load_causal_lm(str(tiny_model))
    with torch.no_grad():
        ref_c = naive_sequence_logps(model, **chosen).double()
        ref_r = naive_sequence_logps(model, **rejected).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    theirs = []
    for _ in range(steps):
        pc = naive_sequence_logps(model, **chosen).double()
        pr = naive_sequence_logps(model, **rejected).double()
        h = (pc - pr) - (ref_c - ref_r)
        loss = -torch.nn.functional.logsigmoid(beta * h).mean()
        theirs.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert len(ours) == steps
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a - b) < 1e-5, (ours, theirs)
    assert theirs[-1] < theirs[0]


def test_synthetic_preferences_are_learned(tmp_path, pairs_file, run_config):
    data = pairs_file(96, seed=1)
    config = run_config(
        data,
        eval_fraction=0.25,
        epochs=3,
        eval_every=3,
        beta=0.1,
        learning_rate=1e-3,
        warmup_steps=2,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    out = tmp_path / "out"
    evals = events(out / "metrics.jsonl", "eval")
    assert evals[-1]["reward_accuracy"] > 0.9
    assert evals[-1]["reward_margin"] > evals[0]["reward_margin"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["eval"]["pairs"] == 24
    before = load_file(
        str(
            Path(
                json.loads((out / summary["final_checkpoint"] / "engine_config.json").read_text())[
                    "model"
                ]
            )
            / "model.safetensors"
        )
    )
    after = weights(Path(summary["final_checkpoint"]))
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged
    (done,) = events(out / "metrics.jsonl", "done")
    assert done["final_checkpoint"] == summary["final_checkpoint"]


def test_gradient_accumulation_equals_one_large_batch(tmp_path, pairs_file, run_config):
    """Six pairs in one step: one micro-batch of 6, or micro-batches of 4 + 2 (unequal, so a
    mean of micro-batch means would differ). Adam's epsilon is large so the update is close
    to linear in the gradient."""
    data = pairs_file(6)
    finals = []
    for micro in (8, 4, 1):
        config = run_config(
            data,
            name=f"run{micro}.json",
            out_dir=str(tmp_path / f"o{micro}"),
            batch_size=8,
            micro_batch_size=micro,
            max_steps=1,
            learning_rate=1.0,
            adam_epsilon=1.0,
            max_grad_norm=None,
            length_bucketing=False,
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        finals.append(weights(tmp_path / f"o{micro}" / "checkpoint-000001"))
    for other in finals[1:]:
        for name, value in finals[0].items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=2e-6, msg=name)


def test_reference_log_probs_are_cached_and_reused(tmp_path, pairs_file, run_config):
    data = pairs_file(8)
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        config = run_config(
            data,
            name=f"{name}.json",
            out_dir=str(tmp_path / name),
            reference_cache_dir=str(cache),
            max_steps=1,
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
    (first,) = events(tmp_path / "a" / "metrics.jsonl", "reference")
    (second,) = events(tmp_path / "b" / "metrics.jsonl", "reference")
    assert not first["cached"] and second["cached"]
    # other tokenisation settings make another cache entry
    config = run_config(
        data,
        name="c.json",
        out_dir=str(tmp_path / "c"),
        reference_cache_dir=str(cache),
        max_steps=1,
        max_length=100,
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    (third,) = events(tmp_path / "c" / "metrics.jsonl", "reference")
    assert not third["cached"] and len(list(cache.glob("reference-*.safetensors"))) == 2


def test_reference_free_ipo_and_conservative_runs_train(tmp_path, pairs_file, run_config):
    data = pairs_file(8)
    for name, extra in (
        ("free", {"reference_free": True}),
        ("ipo", {"loss_type": "ipo"}),
        ("cdpo", {"label_smoothing": 0.1}),
    ):
        config = run_config(
            data, name=f"{name}.json", out_dir=str(tmp_path / name), max_steps=2, **extra
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        metrics = tmp_path / name / "metrics.jsonl"
        assert bool(events(metrics, "reference")) is not extra.get("reference_free", False)
        first = events(metrics, "train")[0]
        if name == "ipo":  # h = 0 at the start: (0 - 1 / (2 * beta))^2 = 25 for beta 0.1
            assert abs(first["loss"] - 25.0) < 1e-4
        if name == "cdpo":  # both terms are ln 2 at the start
            assert abs(first["loss"] - math.log(2)) < 1e-5


def test_lora_trains_an_adapter_against_the_base_model(tmp_path, pairs_file, run_config):
    config = run_config(
        pairs_file(16), lora=True, lora_r=4, max_steps=3, gradient_checkpointing=True
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    out = tmp_path / "out"
    first = events(out / "metrics.jsonl", "train")[0]
    assert abs(first["loss"] - math.log(2)) < 1e-5
    final = out / "checkpoint-000003"
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()
    (done,) = events(out / "metrics.jsonl", "done")
    assert done["final_checkpoint"] == str(final / "merged")
    merged = load_causal_lm(done["final_checkpoint"])
    assert merged.config.num_hidden_layers == 2
    assert not any(n.startswith("base_model") for n, _ in merged.named_parameters())


def test_chat_data_trains(tmp_path, run_config):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"question {i}"}],
            "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad {i}"}],
            "meta": {"x": 1},
        }
        for i in range(8)
    ]
    config = run_config(write_jsonl(tmp_path / "chat.jsonl", rows), max_steps=2)
    assert engine("train", "--config", str(config)) == EXIT_OK
    assert events(tmp_path / "out" / "metrics.jsonl", "done")


def test_an_existing_run_needs_resume(tmp_path, pairs_file, run_config):
    config = run_config(pairs_file(8), max_steps=1)
    assert engine("train", "--config", str(config)) == EXIT_OK
    assert engine("train", "--config", str(config)) != EXIT_OK
    assert engine("train", "--config", str(config), "--resume") == EXIT_OK


def test_parquet_snapshots_are_read(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = synthetic_pairs(4)
    rows[0] = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:1]), path)
    (example,) = tokenize_pairs(read_records(path), Tokenization(tokenizer, 64, 32))
    assert example.prompt_ids[0] == tokenizer.bos_token_id


def test_only_the_newest_checkpoints_are_kept_when_asked(tmp_path, pairs_file, run_config):
    config = run_config(pairs_file(8), max_steps=3, save_every=1, keep_checkpoints=2)
    assert engine("train", "--config", str(config)) == EXIT_OK
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("check"))
    assert names == ["checkpoint-000002", "checkpoint-000003"]
    saved = [e["step"] for e in events(tmp_path / "out" / "metrics.jsonl", "checkpoint")]
    assert saved == [1, 2, 3]
