"""Build the demo's starting model on this machine: no download.

A tiny Llama-architecture model with a byte-level tokenizer is written by the engine, then
fine-tuned (SFT) on the demo pairs' responses so that its samples look like text. Idempotent:
a finished model is reused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.management.commands.seed_demo import DEMO_PAIRS
from training.runner import engine_command

DEMO_MODEL_DIR = settings.VAR_DIR / "models"
# Sized to stay well under 90 s on an idle 2-core machine: 40 steps of 8 sequences cut at 128
# tokens (the demo responses' openings are what its samples need to look like) took 45 s of
# CPU (user + sys) in all, loss 5.9 -> 3.1 (README "Performance" has the command and load).
DEFAULT_STEPS = 40
SFT_MAX_LENGTH = 128
POLL_SECONDS = 0.5


def demo_model_path() -> Path:
    return DEMO_MODEL_DIR / "demo-sft"


class Command(BaseCommand):
    help = "Build and fine-tune the tiny local model the demo project starts from."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--steps", type=int, default=DEFAULT_STEPS, help=f"SFT steps ({DEFAULT_STEPS})"
        )
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
        log_path = DEMO_MODEL_DIR / "demo-sft.log"
        with log_path.open("w") as log:
            self.stdout.write(f"[1/2] Building the tiny base model (log: {log_path})")
            self._engine(log, "tiny-model", str(base), "--hidden-size", "128", "--layers", "4")
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
            "max_length": SFT_MAX_LENGTH,
            "max_prompt_length": SFT_MAX_LENGTH // 2,
            "learning_rate": 3e-3,
            "warmup_steps": max(1, options["steps"] // 10),
            "batch_size": 8,
            "micro_batch_size": 8,
            "max_steps": options["steps"],
            "eval_fraction": 0.0,
            "log_every": 1,  # one metrics line a step: the progress bar follows them
            "seed": 0,
        }
        config_path = DEMO_MODEL_DIR / "demo-sft.json"
        config_path.write_text(json.dumps(config, indent=2))
        self.stdout.write(f"[2/2] Fine-tuning the demo model ({options['steps']} steps)")
        # A half-finished earlier attempt would make the engine refuse the directory.
        shutil.rmtree(work, ignore_errors=True)
        with log_path.open("a") as log:
            self._engine(log, "sft", "--config", str(config_path), progress=work / "metrics.jsonl")
        checkpoints = sorted(work.glob("checkpoint-*"))
        if not checkpoints:
            raise CommandError(f"SFT wrote no checkpoint under {work}")
        if final.is_symlink() or final.exists():
            final.unlink()
        final.symlink_to(checkpoints[-1].resolve(), target_is_directory=True)
        minutes = (time.monotonic() - started) / 60
        self.stdout.write(self.style.SUCCESS(f"Demo model ready at {final} ({minutes:.1f} min)"))

    def _engine(self, log: IO[str], *args: str, progress: Path | None = None) -> None:
        """Run the engine with its output in the log; draw a bar from its metrics stream."""
        command = engine_command(*args)
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
        )
        returncode = process.wait() if progress is None else _follow(process, progress)
        if returncode != 0:
            log.flush()
            tail = Path(log.name).read_text(errors="replace").splitlines()[-15:]
            self.stderr.write("\n".join(tail))
            raise CommandError(f"{' '.join(command)} exited with status {returncode}")


def _follow(process: subprocess.Popen[bytes], metrics: Path) -> int:
    """Draw a terminal progress bar with an ETA from the engine's metrics.jsonl until it exits.

    tqdm prints a fresh line now and then instead of redrawing when stderr is not a terminal.
    """
    from tqdm import tqdm

    bar: Any = None
    offset = 0
    try:
        while True:
            returncode = process.poll()
            if metrics.exists():
                with metrics.open(encoding="utf-8") as stream:
                    stream.seek(offset)
                    for line in stream:
                        if not line.endswith("\n"):
                            break  # a line still being written: read it next time
                        offset += len(line.encode())
                        event = json.loads(line)
                        if event.get("event") == "start":
                            bar = tqdm(
                                total=event.get("total_steps"),
                                unit="step",
                                file=sys.stderr,
                                dynamic_ncols=True,
                                mininterval=0.5,
                                smoothing=0.1,
                            )
                        elif event.get("event") == "train" and bar is not None:
                            bar.update(event["step"] - bar.n)
                            if isinstance(event.get("loss"), int | float):
                                bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
            if returncode is not None:
                return returncode
            time.sleep(POLL_SECONDS)
    finally:
        if bar is not None:
            bar.close()
