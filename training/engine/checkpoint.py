"""Checkpoint directories and the trainer state that makes ``--resume`` exact.

A checkpoint ``<out_dir>/checkpoint-<step>`` holds, with no pickle anywhere:

- the model in Hugging Face format: ``model.safetensors`` + ``config.json`` (full fine-tuning) or
  ``adapter_model.safetensors`` + ``adapter_config.json`` (LoRA), the tokenizer files, and
  ``generation_config.json`` where the model has one;
- ``engine_config.json``: the run's config;
- ``trainer_state.json``: step, epoch, optimizer param groups;
- ``optimizer.safetensors``: the AdamW moments; ``rng.safetensors``: the torch RNG states.

It is written to a hidden temporary directory and renamed into place, so a killed process never
leaves a half-written checkpoint behind; a save that fails (a full disk) removes its temporary
directory before the error propagates, and a run removes any left by a killed process.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TEMPORARY_RE = re.compile(r"^\.checkpoint-(\d+)\.tmp$")
STATE_FILE = "trainer_state.json"


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return out_dir / f"checkpoint-{step:06d}"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir``, oldest first."""
    if not out_dir.is_dir():
        return []
    found = []
    for path in out_dir.iterdir():
        match = CHECKPOINT_RE.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def optimizer_to_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimizer state dict into flat tensors and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        plain[str(param_id)] = {}
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[str(param_id)][key] = value
    return tensors, {"state": plain, "param_groups": state_dict["param_groups"]}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], rest: Any) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in rest["state"].items()}
    for name, value in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [
        tensors[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in tensors
    ]
    if cuda and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def write_trainer_state(
    path: Path, step: int, optimizer_state: dict[str, Any], extra: dict[str, Any]
) -> None:
    tensors, rest = optimizer_to_tensors(optimizer_state)
    save_file(tensors, str(path / "optimizer.safetensors"))
    save_file(rng_tensors(), str(path / "rng.safetensors"))
    state = {"step": step, "optimizer": rest, **extra}
    (path / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def read_trainer_state(
    path: Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """``(trainer state, optimizer state dict, RNG states for restore_rng)``."""
    state = json.loads((path / STATE_FILE).read_text())
    optimizer = optimizer_from_tensors(
        load_file(str(path / "optimizer.safetensors")), state["optimizer"]
    )
    return state, optimizer, load_file(str(path / "rng.safetensors"))


def temporary_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp"


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A fresh temporary directory to write checkpoint ``final`` into, moved into place when the
    block ends; when anything in the block (or the move) fails, it is removed and the error
    propagates, so a failed save leaves nothing behind."""
    tmp = temporary_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        finalize(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_temporaries(out_dir: Path) -> None:
    """Remove temporary checkpoint directories a killed process left in ``out_dir``."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        if TEMPORARY_RE.match(path.name) and path.is_dir():
            logger.info("removing %s, left by an interrupted save", path)
            shutil.rmtree(path, ignore_errors=True)


def finalize(tmp: Path, final: Path) -> None:
    """Move a fully written temporary checkpoint into place."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def prune(out_dir: Path, keep: int | None, protect: Path | None = None) -> None:
    if keep is None:
        return
    found = list_checkpoints(out_dir)
    for _step, path in found[:-keep]:
        if path != protect:
            shutil.rmtree(path, ignore_errors=True)
