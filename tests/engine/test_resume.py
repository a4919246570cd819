"""Exact resume from a checkpoint, and SIGTERM: save, exit with EXIT_CANCELLED, resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.engine import EXIT_CANCELLED, EXIT_OK
from training.engine.metrics import read_metrics

from .conftest import engine, events

REPO = Path(__file__).resolve().parents[2]


def test_an_interrupted_and_resumed_run_gives_the_same_losses(tmp_path, pairs_file, run_config):
    data = pairs_file(12)
    # 3 steps per epoch, 7 steps: the resume point (step 3) sits on an epoch boundary and
    # training goes on through a second epoch boundary
    common = {
        "batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 7,
        "save_every": 3,
        "warmup_steps": 2,
        "lora_dropout": 0.0,
    }
    full = run_config(data, name="full.json", out_dir=str(tmp_path / "full"), **common)
    assert engine("train", "--config", str(full)) == EXIT_OK
    full_losses = [e["loss"] for e in events(tmp_path / "full" / "metrics.jsonl", "train")]

    # the "interrupted" run: a copy of the first, as it stood right after step 3
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-000003", part / "checkpoint-000003")
    shutil.copytree(tmp_path / "full" / "reference_cache", part / "reference_cache")
    resumed = run_config(data, name="part.json", out_dir=str(part), **common)
    assert engine("train", "--config", str(resumed), "--resume") == EXIT_OK
    resumed_events = events(part / "metrics.jsonl", "train")
    assert [e["step"] for e in resumed_events] == [4, 5, 6, 7]
    assert [e["loss"] for e in resumed_events] == full_losses[3:]
    a = load_file(str(tmp_path / "full" / "checkpoint-000007" / "model.safetensors"))
    b = load_file(str(part / "checkpoint-000007" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_without_a_reference_cache_recomputes_it_from_the_starting_weights(
    tmp_path, pairs_file, run_config
):
    data = pairs_file(8)
    config = run_config(data, max_steps=4, save_every=2, batch_size=4, micro_batch_size=4)
    assert engine("train", "--config", str(config)) == EXIT_OK
    losses = [e["loss"] for e in events(tmp_path / "out" / "metrics.jsonl", "train")]
    shutil.rmtree(tmp_path / "out" / "checkpoint-000004")
    shutil.rmtree(tmp_path / "out" / "reference_cache")
    assert engine("train", "--config", str(config), "--resume") == EXIT_OK
    again = events(tmp_path / "out" / "metrics.jsonl", "train")[-2:]
    assert [e["step"] for e in again] == [3, 4]
    assert max(abs(a["loss"] - b) for a, b in zip(again, losses[2:], strict=True)) < 1e-5


def test_sigterm_saves_a_checkpoint_and_exits_with_the_cancelled_status(
    tmp_path, pairs_file, run_config
):
    data = pairs_file(16)
    config = run_config(data, batch_size=4, micro_batch_size=4, max_steps=300, learning_rate=1e-4)
    metrics = tmp_path / "out" / "metrics.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.engine", "--quiet", "train", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if metrics.exists() and any(e["event"] == "train" for e in read_metrics(metrics)):
                break
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == EXIT_CANCELLED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cancelled = read_metrics(metrics)[-1]
    assert cancelled["event"] == "cancelled"
    step = cancelled["step"]
    assert 0 < step < 300
    checkpoint = Path(cancelled["checkpoint"])
    assert (checkpoint / "trainer_state.json").is_file()
    assert (checkpoint / "model.safetensors").is_file()

    assert engine("train", "--config", str(config), "--resume") == EXIT_OK
    trained = [e["step"] for e in events(metrics, "train")]
    assert trained == list(range(1, 301))  # each step exactly once, none lost or repeated
