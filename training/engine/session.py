"""What a training run holds while it runs: the session, the objective protocol, cancellation."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch

from .config import CommonConfig
from .metrics import MetricsWriter

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived; raised after the checkpoint (if any) was written."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"cancelled at step {step}")
        self.step = step
        self.checkpoint = checkpoint


class Diverged(Exception):
    """Training stopped because it diverged: the loss or the gradient norm became non-finite
    (``reason`` ``"non_finite"``), or the loss grew past ``divergence_factor`` times its
    starting value (``"loss_growth"``). ``checkpoint`` is the last one written before (or None);
    none is written after the step that diverged."""

    def __init__(self, step: int, reason: str, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason
        self.checkpoint = checkpoint


class Objective(Protocol):
    """What the loop needs from a training objective."""

    @property
    def command(self) -> str:
        """``"train"`` or ``"sft"``."""

    @property
    def unit(self) -> str:
        """What a batch row is: ``"pairs"`` or ``"examples"``."""

    @property
    def train(self) -> Sequence[Any]:
        """The training examples (after ``prepare``)."""

    @property
    def eval(self) -> Sequence[Any]:
        """The eval examples (after ``prepare``)."""

    @property
    def truncated(self) -> int:
        """How many rows were truncated to fit ``max_length``."""

    def prepare(self, config: Any, tokenizer: Any) -> None:
        """Read and tokenise the data (before any model is loaded)."""

    def before_policy(self, session: Session) -> None:
        """Work that needs a model other than the policy (the DPO reference pass)."""

    def after_policy(self, session: Session) -> None:
        """Work that needs the freshly loaded policy, before it trains."""

    def denominator(self, examples: Sequence[Any]) -> float:
        """What a step's summed loss is divided by (pairs for DPO, response tokens for SFT)."""

    def forward(
        self, model: torch.nn.Module, examples: Sequence[Any], denominator: float, session: Session
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss to back-propagate, detached per-batch sums for the metrics)``."""

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn summed statistics into the reported metrics."""


@dataclass
class Session:
    """Everything a run holds; passed to the objective's hooks."""

    config: CommonConfig
    accelerator: Any
    writer: MetricsWriter
    tokenizer: Any
    precision: str
    resume_from: Path | None
    stop: StopFlag
    policy: Any = None  # the Hugging Face (or peft) model being trained
    timings: dict[str, float] = field(default_factory=dict)
    # the first optimizer step's loss, the base of the divergence check (kept in checkpoints)
    initial_loss: float | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.accelerator.device)

    def autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


class StopFlag:
    """Turns SIGTERM and SIGINT into a flag the loop polls between optimizer steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("received signal %d: stopping after the current step", signum)
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
