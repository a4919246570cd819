"""Run the engine as a child process and follow it: the worker never imports torch or CUDA.

The child gets SIGTERM if the worker process dies (Linux PR_SET_PDEATHSIG), so a killed worker
does not leave an orphan training on the GPU; SIGTERM makes the engine save a checkpoint and
exit, and the watchdog resumes the run from it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 60


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def engine_command(*args: str, processes: int | None = None) -> list[str]:
    """processes: a run's own count (training.services); default PREFLAB_TRAIN_PROCESSES."""
    python = settings.PREFLAB_ENGINE_PYTHON or sys.executable
    processes = settings.PREFLAB_TRAIN_PROCESSES if processes is None else processes
    if processes > 1 and args and args[0] in {"train", "sft"}:
        return [
            python, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
            "-m", "training.engine", *args,
        ]  # fmt: skip
    return [python, "-m", "training.engine", *args]


class MetricsFollower:
    """Reads the lines a running engine appends to its metrics file, never a partial line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("skipping a malformed metrics line in %s", self.path)


@dataclass
class EngineProcess:
    """A running engine child, its log file and the last lines it printed."""

    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        root = Path(settings.BASE_DIR)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        logger.info("started engine pid %s: %s", self.process.pid, " ".join(self.command))

    def poll(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("r", encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=LOG_TAIL_LINES))


def follow(
    engine: EngineProcess,
    on_tick: Callable[[], bool],
    interval: float = 1.0,
    grace_seconds: float = 300.0,
) -> int:
    """Call on_tick every interval until the engine exits; returns its exit status.

    on_tick returns True when the run should be cancelled: the engine gets SIGTERM (it saves a
    checkpoint and exits), and SIGKILL if it has not exited after grace_seconds.
    """
    cancelled_at: float | None = None
    while True:
        code = engine.poll()
        wants_cancel = on_tick()
        if code is not None:
            return code
        if wants_cancel and cancelled_at is None:
            cancelled_at = time.monotonic()
            engine.terminate()
        if cancelled_at is not None and time.monotonic() - cancelled_at > grace_seconds:
            engine.kill()
        time.sleep(interval)
