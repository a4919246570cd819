"""Two processes (torchrun on CPU: accelerate picks gloo) train exactly like one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training.engine import EXIT_OK

from .conftest import engine, events

REPO = Path(__file__).resolve().parents[2]


def test_two_processes_give_the_same_losses_as_one(tmp_path, pairs_file, run_config):
    data = pairs_file(24)
    common = {"batch_size": 8, "micro_batch_size": 2, "max_steps": 3, "eval_fraction": 0.25}
    one = run_config(data, name="one.json", out_dir=str(tmp_path / "one"), **common)
    two = run_config(data, name="two.json", out_dir=str(tmp_path / "two"), **common)
    assert engine("train", "--config", str(one)) == EXIT_OK

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "training.engine", "--quiet", "train", "--config", str(two)),
    ]
    result = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == EXIT_OK, result.stderr[-3000:]

    def losses(out: str) -> list[float]:
        metrics = tmp_path / out / "metrics.jsonl"
        return [e["loss"] for kind in ("train", "eval") for e in events(metrics, kind)]

    (start,) = events(tmp_path / "two" / "metrics.jsonl", "start")
    assert start["processes"] == 2
    a, b = losses("one"), losses("two")
    assert len(a) == len(b) == 4
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
    assert (tmp_path / "two" / "checkpoint-000003" / "model.safetensors").is_file()
