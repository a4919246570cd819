"""The reference cache shared across runs: a hit loads no reference model and runs no forward."""

from __future__ import annotations

import json
import logging
import os
import shutil

import torch

from training.engine import EXIT_OK
from training.engine.modeling import load_tokenizer
from training.engine.refcache import (
    FINGERPRINTS_FILE,
    ReferenceCache,
    model_fingerprint,
    tokenizer_fingerprint,
)

from .conftest import engine, events


def test_a_second_run_on_the_same_data_and_reference_runs_no_reference_forward(
    tmp_path, tiny_model, pairs_file, run_config, caplog
):
    data = pairs_file(12)
    cache = tmp_path / "shared-cache"
    reference = tmp_path / "reference"
    shutil.copytree(tiny_model, reference)
    common = {"reference_model": str(reference), "reference_cache_dir": str(cache)}
    first = run_config(data, name="a.json", out_dir=str(tmp_path / "a"), max_steps=1, **common)
    assert engine("train", "--config", str(first)) == EXIT_OK
    (miss,) = events(tmp_path / "a" / "metrics.jsonl", "reference")
    assert not miss["cached"] and miss["forwards"] > 0
    summary_a = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary_a["reference_forwards"] == miss["forwards"]

    # the second run must not even load the reference model: its weights become garbage of the
    # same size and modification time, which the memoised fingerprint (keyed by path, size and
    # mtime) does not notice, so the key still hits but any load of the model would fail
    weights = reference / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"\0" * stat.st_size)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = run_config(data, name="b.json", out_dir=str(tmp_path / "b"), max_steps=1, **common)
    with caplog.at_level(logging.INFO, logger="training.engine.dpo"):
        assert engine("train", "--config", str(second)) == EXIT_OK
    (hit,) = events(tmp_path / "b" / "metrics.jsonl", "reference")
    assert hit["cached"] and hit["forwards"] == 0
    assert hit["cache_keys"] == miss["cache_keys"]
    assert f"reference log-probs loaded from cache {hit['cache_keys'][0]}" in caplog.text
    summary_b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary_b["reference_forwards"] == 0
    # the same reference numbers, hence the same first loss
    losses = [events(tmp_path / out / "metrics.jsonl", "train")[0]["loss"] for out in ("a", "b")]
    assert losses[0] == losses[1]


def test_the_key_follows_the_reference_weights_content_not_their_path(
    tmp_path, tiny_model, pairs_file, run_config
):
    data = pairs_file(8)
    cache = tmp_path / "cache"
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    keys = []
    for name, ref in (("orig", tiny_model), ("copy", copy)):
        config = run_config(
            data,
            name=f"{name}.json",
            out_dir=str(tmp_path / name),
            max_steps=1,
            reference_model=str(ref),
            reference_cache_dir=str(cache),
        )
        assert engine("train", "--config", str(config)) == EXIT_OK
        (event,) = events(tmp_path / name / "metrics.jsonl", "reference")
        keys.append((event["cache_keys"], event["cached"]))
    assert keys[0][0] == keys[1][0] and keys[1][1]  # a copy of the same bytes hits

    # other weights in the same directory: another key
    from safetensors.torch import load_file, save_file

    weights = load_file(str(copy / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    config = run_config(
        data,
        name="changed.json",
        out_dir=str(tmp_path / "changed"),
        max_steps=1,
        reference_model=str(copy),
        reference_cache_dir=str(cache),
    )
    assert engine("train", "--config", str(config)) == EXIT_OK
    (event,) = events(tmp_path / "changed" / "metrics.jsonl", "reference")
    assert not event["cached"] and event["cache_keys"] != keys[0][0]


def test_model_fingerprints_are_memoised_by_size_and_mtime(tmp_path, tiny_model):
    memo = tmp_path / "memo"
    first = model_fingerprint(str(tiny_model), memo)
    stored = json.loads((memo / FINGERPRINTS_FILE).read_text())
    assert any("model.safetensors:" in key for key in stored)
    # a poisoned memo entry is used as-is: proof that the second call hashed nothing
    poisoned = {k: "0" * 64 for k in stored}
    (memo / FINGERPRINTS_FILE).write_text(json.dumps(poisoned))
    second = model_fingerprint(str(tiny_model), memo)
    assert second != first and {d for _n, d in second["files"]} == {"0" * 64}
    assert all(not n.startswith("tokenizer") for n, _d in first["files"])


def test_the_tokenizer_fingerprint_covers_the_chat_template(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    before = tokenizer_fingerprint(tokenizer)
    tokenizer.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_fingerprint(tokenizer) != before


def test_a_damaged_or_misshapen_entry_is_a_miss(tmp_path):
    cache = ReferenceCache(tmp_path)
    cache.store("k1", torch.zeros(3, 2))
    assert cache.load("k1", 3) is not None
    assert cache.load("k1", 4) is None  # another row count
    cache.path("k2").write_bytes(b"not safetensors")
    assert cache.load("k2", 3) is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_paths_are_worker_managed_keys():
    from training.engine.config import WORKER_MANAGED_KEYS

    assert {"reference_cache_dir", "out_dir", "metrics_file"} <= WORKER_MANAGED_KEYS
