"""training.engine imports nothing of Django, Celery or our other packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from training.engine import EXIT_OK

from .conftest import engine

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import sys
import training.engine
import training.engine.cli, training.engine.trainer, training.engine.dpo, training.engine.sft
import training.engine.sampling, training.engine.tiny, training.engine.losses
forbidden = [m for m in sys.modules
             if m.split(".")[0] in {"django", "celery", "labeling", "workers", "config"}]
assert "django" not in sys.modules, forbidden
assert not forbidden, forbidden
print("ok")
"""


def test_the_engine_imports_without_django_in_a_fresh_interpreter():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tiny_model_command_writes_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny"
    assert engine("tiny-model", str(out)) == EXIT_OK
    tokenizer = AutoTokenizer.from_pretrained(str(out))  # no trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(str(out), use_safetensors=True)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size >= len(tokenizer)
    assert not list(out.glob("*.bin"))
