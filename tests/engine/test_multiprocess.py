"""Several processes (gloo on a CPU) train exactly like one: DDP and FSDP, save and resume.

The engine starts the processes itself when the config says ``processes: 2``; every launch
costs a few seconds of interpreter and torch start-up per process, so each test launches as
few as it can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.engine import EXIT_OK

from .conftest import engine, events

REPO = Path(__file__).resolve().parents[2]
COMMON = {
    "batch_size": 8,
    "micro_batch_size": 2,
    "max_steps": 4,
    "save_every": 2,
    "eval_fraction": 0.25,
    "trackers": [],
}


def launch(config: Path, *extra: str) -> None:
    """``python -m training.engine train`` in a fresh interpreter (it starts the ranks)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "training.engine", "--quiet", "train", "--config"]
    result = subprocess.run(
        [*command, str(config), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_OK, result.stderr[-4000:]


def losses(out: Path) -> list[tuple[str, int, float]]:
    metrics = out / "metrics.jsonl"
    return [(k, e["step"], e["loss"]) for k in ("train", "eval") for e in events(metrics, k)]


def close(a: list[tuple[str, int, float]], b: list[tuple[str, int, float]], tol: float) -> bool:
    return [x[:2] for x in a] == [y[:2] for y in b] and all(
        abs(x[2] - y[2]) < tol for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model):
    """The reference run: one process, in this interpreter."""
    from .conftest import synthetic_pairs, write_jsonl

    root = tmp_path_factory.mktemp("one")
    data = write_jsonl(root / "pairs.jsonl", synthetic_pairs(24))
    config = root / "one.json"
    body = {**COMMON, "data": str(data), "model": str(tiny_model), "out_dir": str(root / "out")}
    body |= {"learning_rate": 1e-3, "warmup_steps": 0, "log_every": 1}
    body |= {"max_length": 128, "max_prompt_length": 64}
    config.write_text(json.dumps(body))
    assert engine("train", "--config", str(config)) == EXIT_OK
    return body, root / "out"


@pytest.mark.slow
@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_processes_train_save_and_resume_like_one(tmp_path, one_process, distributed):
    body, one_out = one_process
    two = {**body, "out_dir": str(tmp_path / "two"), "processes": 2, "distributed": distributed}
    config = tmp_path / "two.json"
    config.write_text(json.dumps(two))
    launch(config)
    (start,) = events(tmp_path / "two" / "metrics.jsonl", "start")
    assert start["processes"] == 2
    (setup,) = events(tmp_path / "two" / "metrics.jsonl", "engine")
    assert setup["distributed"] == distributed
    assert close(losses(one_out), losses(tmp_path / "two"), 1e-5)
    final_one = load_file(str(one_out / "checkpoint-000004" / "model.safetensors"))
    final_two = load_file(str(tmp_path / "two" / "checkpoint-000004" / "model.safetensors"))
    assert sorted(final_one) == sorted(final_two)  # full weights, not one process's shard
    for name, value in final_one.items():
        torch.testing.assert_close(final_two[name], value, rtol=0, atol=1e-5, msg=name)
    # the reference pass was split: both processes ran reference forwards
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    (reference,) = events(tmp_path / "two" / "metrics.jsonl", "reference")
    assert reference["processes"] == 2 and summary["reference_forwards"] == reference["forwards"]

    # resume the two-process run from its step-2 checkpoint: the same numbers, bit for bit
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "two" / "checkpoint-000002", part / "checkpoint-000002")
    shutil.copytree(tmp_path / "two" / "reference_cache", part / "reference_cache")
    config.write_text(json.dumps({**two, "out_dir": str(part)}))
    launch(config, "--resume")
    resumed = losses(part)
    assert resumed == [x for x in losses(tmp_path / "two") if x[1] > 2]
    for file in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(str(tmp_path / "two" / "checkpoint-000004" / file))
        b = load_file(str(part / "checkpoint-000004" / file))
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), file
