"""Experiment trackers beside ``metrics.jsonl``: TensorBoard, Weights & Biases, MLflow.

They go through accelerate's trackers (``Accelerator(log_with=...)``). ``trackers: null`` (the
default) means TensorBoard when the ``tensorboard`` package is installed (it is in the ``train``
extra), plus W&B when ``wandb`` is installed and configured (``WANDB_API_KEY`` or ``WANDB_MODE``
set) and MLflow when ``mlflow`` is installed and ``MLFLOW_TRACKING_URI`` is set. A list names
them exactly (an uninstalled one is an error); ``[]`` turns them off. TensorBoard writes under
``<out_dir>/tensorboard``; W&B and MLflow go where their environment variables point. The JSONL
stream stays the record the run page reads; trackers get the same numbers, under
``train/<name>`` and ``eval/<name>``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from .config import CommonConfig, ConfigError

logger = logging.getLogger(__name__)

PROJECT_NAME = "preflab"


def tensorboard_dir(config: CommonConfig) -> Path:
    return Path(config.out_dir) / "tensorboard"


def _installed(name: str) -> bool:
    module = {"tensorboard": "tensorboard"}.get(name, name)
    return importlib.util.find_spec(module) is not None


def resolve_trackers(config: CommonConfig) -> list[str]:
    """The trackers this run logs to (see the module docstring)."""
    if config.trackers is not None:
        missing = [t for t in config.trackers if not _installed(t)]
        if missing:
            raise ConfigError(f"trackers: {', '.join(missing)} is not installed")
        return list(config.trackers)
    chosen = []
    if _installed("tensorboard"):
        chosen.append("tensorboard")
    if _installed("wandb") and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
        chosen.append("wandb")
    if _installed("mlflow") and os.environ.get("MLFLOW_TRACKING_URI"):
        chosen.append("mlflow")
    return chosen


def hparams(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A flat mapping of scalars (TensorBoard's hparams accept nothing else)."""
    out: dict[str, Any] = {}
    for key, value in config_dict.items():
        if isinstance(value, bool | int | float | str):
            out[key] = value
        elif value is not None:
            out[key] = str(value)
    return out


def log_metrics(accelerator: Any, split: str, metrics: dict[str, Any], step: int) -> None:
    """Send a train or eval line's numbers to the trackers (main process only)."""
    if not accelerator.is_main_process or not accelerator.trackers:
        return
    values = {
        f"{split}/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    accelerator.log(values, step=step)
