"""A real Celery worker process against the test database and the configured broker.

The broker is Redis when CELERY_BROKER_URL says so (CI) and Celery's file-system transport
otherwise, so these tests run on a machine with nothing installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def broker_reachable() -> bool:
    from workers.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception:
        return False
    return True


# Short job timings for the workers tests start: a dead worker's job moves on within ~5 s.
FAST_JOBS = {
    "PREFLAB_HEARTBEAT_SECONDS": "1",
    "PREFLAB_HEARTBEAT_TIMEOUT_SECONDS": "4",
    "PREFLAB_WATCHDOG_SECONDS": "1",
    "PREFLAB_REQUEUE_AFTER_SECONDS": "5",
}


class Worker:
    def __init__(self, log_path: Path, env: dict[str, str], pool: tuple[str, ...]) -> None:
        self.log_path = log_path
        self.env = env
        self.pool = pool
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,gpu",
            *self.pool, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if self.env.get("PREFLAB_TEST_BEAT"):
            # Embedded beat: the watchdog runs every PREFLAB_WATCHDOG_SECONDS, as in production.
            command += ["--beat", "--schedule", str(self.log_path.with_suffix(".beat"))]
        log = self.log_path.open("ab")
        # A session of its own, so that stop() can end whatever the worker started: the
        # embedded beat is a child process that outlives a SIGKILLed worker and would go on
        # sending watchdog tasks to the broker of the next run on this machine.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker process alone; its engine learns of it through PDEATHSIG."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        self._kill_group()
        if self.process is not None and self.process.poll() is None:
            self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""


@pytest.fixture
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    settings.ARTIFACT_ROOT = root
    return root


@pytest.fixture
def start_worker(
    transactional_db: None, artifact_root: Path, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    if not broker_reachable():
        skip_or_fail(f"needs the Celery broker at {settings.CELERY_BROKER_URL}")
    from workers.celery import app

    app.control.purge()
    workers: list[Worker] = []

    def start(*, pool: tuple[str, ...] = ("--pool", "solo"), **extra_env: str) -> Worker:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "ARTIFACT_ROOT": str(artifact_root),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_BROKER_FOLDER": str(settings.CELERY_BROKER_FOLDER),
            "PYTHONPATH": str(ROOT),
            **extra_env,
        }
        env.setdefault("PREFLAB_WORKER_ALIVE_FILE", str(tmp_path / f"worker-{len(workers)}.alive"))
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", env, pool)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    app.control.purge()


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, worker: Worker | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    log = worker.log() if worker else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n--- worker log ---\n{log}")
