"""Fixtures of the evaluation product tests: the engine's tiny model and a judging rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's tiny Llama model with a byte tokenizer, built locally once per session."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "training.engine", "tiny-model", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out
