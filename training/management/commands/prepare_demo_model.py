"""Build the demo's starting model on this machine: no download.

A tiny Llama-architecture model with a byte-level tokenizer is written by the engine, then
fine-tuned (SFT) on the demo pairs' responses so that its samples look like text. Idempotent:
a finished model is reused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.management.commands.seed_demo import DEMO_PAIRS
from training.runner import engine_command

DEMO_MODEL_DIR = settings.VAR_DIR / "models"


def demo_model_path() -> Path:
    return DEMO_MODEL_DIR / "demo-sft"


class Command(BaseCommand):
    help = "Build and fine-tune the tiny local model the demo project starts from."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--steps", type=int, default=200, help="SFT optimizer steps (200)")
        parser.add_argument("--force", action="store_true", help="rebuild even if present")

    def handle(self, *args: Any, **options: Any) -> None:
        final = demo_model_path()
        if (final / "config.json").exists() and not options["force"]:
            self.stdout.write(f"Demo model ready at {final}")
            return
        base = DEMO_MODEL_DIR / "tiny-base"
        work = DEMO_MODEL_DIR / "demo-sft-run"
        data = DEMO_MODEL_DIR / "demo-demonstrations.jsonl"
        DEMO_MODEL_DIR.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._engine("tiny-model", str(base), "--hidden-size", "128", "--layers", "4")
        with DEMO_PAIRS.open(encoding="utf-8") as source, data.open("w", encoding="utf-8") as out:
            for line in source:
                pair = json.loads(line)
                prompt = pair.get("messages") or pair["prompt"]
                for key in ("response_a", "response_b"):
                    out.write(json.dumps({"prompt": prompt, "completion": pair[key]}) + "\n")
        config = {
            "data": str(data),
            "model": str(base),
            "out_dir": str(work),
            "max_length": 768,
            "max_prompt_length": 256,
            "learning_rate": 3e-3,
            "warmup_steps": 20,
            "batch_size": 8,
            "micro_batch_size": 8,
            "max_steps": options["steps"],
            "eval_fraction": 0.0,
            "log_every": 25,
            "seed": 0,
        }
        config_path = DEMO_MODEL_DIR / "demo-sft.json"
        config_path.write_text(json.dumps(config, indent=2))
        self.stdout.write(f"Fine-tuning the demo model ({options['steps']} steps)…")
        # A half-finished earlier attempt would make the engine refuse the directory.
        shutil.rmtree(work, ignore_errors=True)
        self._engine("sft", "--config", str(config_path))
        checkpoints = sorted(work.glob("checkpoint-*"))
        if not checkpoints:
            raise CommandError(f"SFT wrote no checkpoint under {work}")
        if final.is_symlink() or final.exists():
            final.unlink()
        final.symlink_to(checkpoints[-1].resolve(), target_is_directory=True)
        minutes = (time.monotonic() - started) / 60
        self.stdout.write(self.style.SUCCESS(f"Demo model ready at {final} ({minutes:.1f} min)"))

    def _engine(self, *args: str) -> None:
        command = engine_command(*args)
        result = subprocess.run(command, cwd=settings.BASE_DIR, check=False)
        if result.returncode != 0:
            raise CommandError(f"{' '.join(command)} exited with status {result.returncode}")
