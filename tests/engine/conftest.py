"""Fixtures for the engine tests: a tiny model built once per session, synthetic data files.

These tests need no database and no Django; they run the same with or without pytest-django.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch

# Tiny models on a 2-core machine: one intra-op thread avoids oversubscription and is fastest.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer(tiny_model: Path) -> Any:
    from training.engine.modeling import load_tokenizer

    return load_tokenizer(str(tiny_model))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A learnable preference: the chosen reply starts with 'yes', the rejected one with 'no',
    both followed by the same random letters; prompts and lengths vary."""
    rng = random.Random(seed)
    letters = "abcdefghij"
    rows = []
    for _ in range(n):
        prompt = "".join(rng.choice(letters) for _ in range(rng.randint(4, 24)))
        tail = "".join(rng.choice(letters) for _ in range(rng.randint(2, 12)))
        rows.append({"prompt": prompt, "chosen": f"yes {tail}", "rejected": f"no {tail}"})
    return rows


@pytest.fixture
def pairs_file(tmp_path: Path) -> Callable[..., Path]:
    def make(n: int = 32, seed: int = 0, name: str = "pairs.jsonl") -> Path:
        return write_jsonl(tmp_path / name, synthetic_pairs(n, seed))

    return make


@pytest.fixture
def run_config(tmp_path: Path, tiny_model: Path) -> Callable[..., Path]:
    """Write a run config (JSON) with small, fast defaults; keyword arguments override them."""

    def make(data: Path, name: str = "run.json", **overrides: Any) -> Path:
        config = {
            "data": str(data),
            "model": str(tiny_model),
            "out_dir": str(tmp_path / "out"),
            "batch_size": 8,
            "micro_batch_size": 4,
            "learning_rate": 1e-3,
            "warmup_steps": 0,
            "log_every": 1,
            "eval_fraction": 0.0,
            "max_length": 128,
            "max_prompt_length": 64,
        }
        config.update(overrides)
        path = tmp_path / name
        path.write_text(json.dumps(config))
        return path

    return make


def engine(*argv: str) -> int:
    """Run the command line in this process (much faster than a subprocess)."""
    from training.engine.cli import main

    return main(["--quiet", *argv])


def events(metrics: Path, kind: str) -> list[dict[str, Any]]:
    from training.engine.metrics import read_metrics

    return [e for e in read_metrics(metrics) if e["event"] == kind]
