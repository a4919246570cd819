"""A real Redis, started by the test on its own port, restarted under a real worker.

Celery 5.7 / kombu 5.7 (pinned) carry the fix for the known "worker stops consuming after a
Redis restart" bug (celery/celery#8091, #8384, #9054; kombu PR #2007, in 5.4.0). What remains
is covered by the worker's liveness guard (core/liveness.py): a worker that still stops
consuming exits, and its supervisor starts a new one, which these tests do by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labeling.models import Snapshot
from labeling.snapshots import build_snapshot, export_snapshot, request_snapshot
from tests.conftest import skip_or_fail
from tests.workers.conftest import FAST_JOBS, ROOT, wait_for
from tests.workers.test_loop import TINY_RUN, finished, labeled_project
from training.models import Checkpoint, RunStatus, TrainingRun
from training.services import request_cancel, start_run

pytestmark = [pytest.mark.slow]

REDIS_PORT = int(os.environ.get("PREFLAB_TEST_REDIS_PORT", "17179"))


class RedisServer:
    """redis-server on 127.0.0.1 without persistence: a restart loses every queued message."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("needs redis-server on PATH")
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(REDIS_PORT, tmp_path)
    server.start()
    yield server
    server.stop()


@contextmanager
def sending_to(url: str) -> Iterator[None]:
    """This process's Celery app (what core.jobs.enqueue sends through) talks to url."""
    from workers.celery import app

    def forget_connections() -> None:
        # The connection and producer pools are bound to the broker they were created for
        # (what Celery itself resets after a fork).
        app._pool = None
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None

    # The file-system default names its transport class (settings); Redis names none.
    saved = app.conf.broker_url, app.conf.broker_transport
    # Celery's broker_url prefers the CELERY_BROKER_URL environment variable (set in CI) over
    # the configured value, so that has to point at the test's server too.
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_url, app.conf.broker_transport = url, None
    forget_connections()
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app.conf.broker_url, app.conf.broker_transport = saved
        forget_connections()


def worker_alive(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "worker_alive"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def exported(project, worker, timeout: float = 120) -> Snapshot:
    snapshot = export_snapshot(project, "every_vote")
    return wait_for(
        lambda: Snapshot.objects.filter(id=snapshot.id, status="succeeded").first(),
        timeout,
        f"snapshot {snapshot.id} built by a worker",
        worker,
    )


def test_redis_restart_while_a_task_runs_then_a_new_task_is_consumed(
    start_worker, redis_server, make_project, tiny_model
):
    env = {"CELERY_BROKER_URL": redis_server.url, "PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS": "8"}
    # Prefork, as deployed: the consumer's loop runs beside the task.
    worker = start_worker(pool=("--concurrency", "2"), **FAST_JOBS, **env)
    project, _ = labeled_project(make_project, tiny_model)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    base = Checkpoint.objects.get(project=project, run=None)
    with sending_to(redis_server.url):
        run = start_run(snapshot, base, {**TINY_RUN, "max_steps": 5000, "save_every": 1000})
        wait_for(
            lambda: TrainingRun.objects.filter(id=run.id, step__gte=1).exists(),
            180,
            "training steps",
            worker,
        )
        alive = worker_alive(worker.env)
        assert alive.returncode == 0, alive.stderr

        redis_server.stop()  # while the training task runs
        time.sleep(2)
        redis_server.start()

        pending = export_snapshot(project, "every_vote")

        def built_or_worker_gone():
            assert worker.process is not None
            done = Snapshot.objects.filter(id=pending.id, status="succeeded").exists()
            return done or worker.process.poll() is not None

        wait_for(built_or_worker_gone, 120, "the new task or the worker's exit", worker)
        if worker.process.poll() is not None:
            # This worker stopped consuming (kombu's restore_unacked crash) and its liveness
            # guard stopped it. What its supervisor does: start a new one, with the watchdog
            # (beat), which resumes the run the dead worker held.
            assert "stopped consuming" in worker.log()
            assert worker_alive(worker.env).returncode != 0
            worker = start_worker(
                pool=("--concurrency", "2"), PREFLAB_TEST_BEAT="1", **FAST_JOBS, **env
            )
        after = wait_for(
            lambda: Snapshot.objects.filter(id=pending.id, status="succeeded").first(),
            120,
            "the snapshot sent after the restart",
            worker,
        )
        assert after.row_count == snapshot.row_count
        assert worker.process is not None and worker.process.poll() is None
        assert worker_alive(worker.env).returncode == 0
        assert request_cancel(TrainingRun.objects.get(id=run.id))
        ended = wait_for(finished(run.id), 120, "the cancelled run", worker)
    # The run went on through the restart (its rows live in the database, not the broker).
    assert ended.status in {RunStatus.CANCELLED, RunStatus.SUCCEEDED}, (ended.error, worker.log())


def test_a_worker_that_cannot_consume_exits_and_fails_its_liveness_check(
    start_worker, redis_server, make_project
):
    env = {"CELERY_BROKER_URL": redis_server.url, "PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS": "4"}
    worker = start_worker(pool=("--concurrency", "1"), **FAST_JOBS, **env)
    alive_file = Path(worker.env["PREFLAB_WORKER_ALIVE_FILE"])
    wait_for(alive_file.exists, 60, "the worker's liveness file", worker)
    assert worker_alive(worker.env).returncode == 0
    redis_server.stop()  # and it stays down: the consumer cannot consume
    stopped_at = time.monotonic()
    assert worker.process is not None
    worker.process.wait(timeout=60)
    assert time.monotonic() - stopped_at < 30
    assert "stopped consuming" in worker.log()
    check = worker_alive(worker.env)
    assert check.returncode != 0
    redis_server.start()
    # The supervisor's restart: a new worker consumes again.
    replacement = start_worker(pool=("--concurrency", "1"), **FAST_JOBS, **env)
    project = make_project("After the outage", pairs=2)
    with sending_to(redis_server.url):
        assert exported(project, replacement).status == "succeeded"
