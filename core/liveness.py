"""Worker liveness: a worker whose consumer stopped (a broker restart it did not survive) is
detected from outside and exits so its supervisor starts a new one.

The consumer's own event loop records a tick every few seconds (a timer on the loop that
fetches messages, so it stops when consuming stops). A guard thread in the worker's main
process touches PREFLAB_WORKER_ALIVE_FILE while ticks are recent. When they are older than
PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS the guard stops touching the file, logs CRITICAL and
stops the worker (SIGTERM, then a hard exit if it has not exited a grace period later), so
`restart: unless-stopped` (compose) or `Restart=always` (systemd) replaces it; the
`worker_alive` management command (compose's healthcheck) reports the same from the file.

With the solo pool a task runs on the consumer's loop and stops its ticks: a worker that is
executing a task counts as alive there (the job's own heartbeat covers the task).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)


def alive_file() -> Path:
    from django.conf import settings

    return Path(settings.PREFLAB_WORKER_ALIVE_FILE)


def alive_timeout() -> float:
    from django.conf import settings

    return float(settings.PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS)


def file_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the file was last touched, or None when it does not exist."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - mtime


def check_alive(path: Path | None = None, timeout: float | None = None) -> tuple[bool, str]:
    path = path or alive_file()
    timeout = alive_timeout() if timeout is None else timeout
    age = file_age(path)
    if age is None:
        return False, f"{path} does not exist: the worker has not started consuming"
    if age > timeout:
        return (
            False,
            f"{path} is {age:.0f}s old (limit {timeout:.0f}s): the worker stopped consuming",
        )
    return True, f"alive: {path} touched {age:.1f}s ago"


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class Guard(threading.Thread):
    def __init__(self, step: LivenessStep, path: Path, timeout: float, interval: float) -> None:
        super().__init__(name="preflab-liveness", daemon=True)
        self.step = step
        self.path = path
        self.timeout = timeout
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            if self.step.alive(self.timeout):
                try:
                    _touch(self.path)
                except OSError:
                    logger.exception("cannot touch the liveness file %s", self.path)
                continue
            logger.critical(
                "the worker's consumer has not ticked for %.0fs: it stopped consuming; "
                "stopping this worker so its supervisor starts a new one",
                time.monotonic() - self.step.last_tick,
            )
            os.kill(os.getpid(), signal.SIGTERM)
            # A consumer wedged badly enough may not finish a warm shutdown.
            if not self.stopped.wait(self.timeout):
                logger.critical("the worker did not stop after SIGTERM; exiting")
                os._exit(70)
            return


class LivenessStep(bootsteps.StartStopStep):
    """A consumer bootstep: ticks from the consumer's loop, a guard thread, the file."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.last_tick = time.monotonic()
        self.tref: Any = None
        self.guard: Guard | None = None
        self.solo = False

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self, timeout: float) -> bool:
        if time.monotonic() - self.last_tick <= timeout:
            return True
        if self.solo:
            from celery.worker import state

            return bool(state.active_requests)
        return False

    def start(self, parent: Any) -> None:
        from celery.concurrency.solo import TaskPool as SoloPool

        timeout = alive_timeout()
        interval = max(0.5, min(5.0, timeout / 4))
        self.solo = isinstance(getattr(parent, "pool", None), SoloPool)
        self.tick()
        self.tref = parent.timer.call_repeatedly(interval, self.tick)
        path = alive_file()
        _touch(path)
        if self.guard is None or not self.guard.is_alive():
            self.guard = Guard(self, path, timeout, interval)
            self.guard.start()

    def stop(self, parent: Any) -> None:
        # A consumer restart (reconnecting to the broker) stops the ticks, not the guard: a
        # reconnection that takes longer than the timeout replaces the worker.
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self.guard is not None:
            self.guard.stopped.set()
        alive_file().unlink(missing_ok=True)
