"""platform/entrypoint.sh run as plain processes from the repository root, as the image runs
it: migrations, gunicorn answering /healthz and stopping on SIGTERM, Celery roles."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from tests.platform.support import ENTRYPOINT, ROOT, entrypoint_argv, option, process_env


def entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def started(role: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ROLE in its own session; whatever is left of it is killed afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", str(ENTRYPOINT), role],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(predicate, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    pytest.fail(f"not ready after {seconds} s:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM to the entrypoint's pid, which after `exec` is the server itself."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 20 s after SIGTERM:\n{log.read_text(errors='replace')}")
    assert code == 0, log.read_text(errors="replace")


def get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def answers(port: int) -> bool:
    try:
        return get(port, "/healthz", **{"X-Forwarded-Proto": "https"})[0] == 200
    except OSError:
        return False


def test_unknown_or_missing_role_fails_with_usage(tmp_path):
    for args in (["serve"], []):
        result = entrypoint(*args, env=process_env(tmp_path))
        assert result.returncode != 0
        assert "usage: entrypoint.sh ROLE" in result.stderr
        assert ("unknown role 'serve'" if args else "no role given") in result.stderr


def test_worker_roles_resolve_to_this_environment_s_celery(tmp_path):
    env = process_env(tmp_path)
    celery = shutil.which("celery", path=env["PATH"])
    assert celery and Path(celery).parent == Path(sys.executable).parent
    argv = entrypoint_argv("worker", "--help", env=env)
    assert argv[:4] == ["celery", "-A", "workers", "worker"]
    assert argv[-1] == "--help"
    gpu = entrypoint_argv("gpu-worker", env=env)
    assert (option(gpu, "-Q"), option(gpu, "--concurrency")) == ("gpu", "1")
    assert entrypoint_argv("beat", env=env)[:4] == ["celery", "-A", "workers", "beat"]
    assert entrypoint_argv("migrate", env=env)[1:] == ["manage.py", "migrate", "--noinput"]


def test_migrate_then_web_serves_healthz_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    env = process_env(tmp_path, PORT=str(port), BIND_HOST="127.0.0.1", WEB_CONCURRENCY="1")

    migrated = entrypoint("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying contenttypes.0001_initial... OK" in migrated.stdout
    again = entrypoint("migrate", env=env)  # compose may run it on every `up`
    assert again.returncode == 0, again.stderr
    assert "No migrations to apply." in again.stdout

    log = tmp_path / "web.log"
    with started("web", env, log) as web:
        wait_for(lambda: answers(port), web, log, seconds=20)
        # exec: the entrypoint's pid is gunicorn's master now, so signals reach it.
        cmdline = Path(f"/proc/{web.pid}/cmdline").read_bytes().split(b"\0")
        assert any(part.endswith(b"gunicorn") for part in cmdline), cmdline

        status, _, body = get(port, "/healthz", **{"X-Forwarded-Proto": "https"})
        assert (status, body) == (200, b"ok")
        # Production settings are in force: plain HTTP is redirected to HTTPS.
        status, headers, _ = get(port, "/healthz")
        assert status == 301
        assert headers["Location"].startswith("https://")
        # The compose healthcheck's command.
        check = entrypoint("healthcheck", env=env)
        assert check.returncode == 0, check.stderr

        stop(web, log)
    assert "GET /healthz" in log.read_text(errors="replace")  # access log on stdout

    failing = entrypoint("healthcheck", env=env)
    assert failing.returncode != 0
    assert "healthcheck:" in failing.stderr


def _celery_preconditions(env: dict[str, str]) -> None:
    if find_spec("workers.celery") is None:
        pytest.skip("workers/celery.py (the Celery app) does not exist yet")
    # kombu's file-system transport keeps its exchange tables in `control_folder`, by default
    # ./control in the working directory, which for the entrypoint is the project itself.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get('control_folder', ''))",
        ],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    if not Path(probe.stdout.strip()).is_absolute():
        pytest.skip(
            "settings' file-system broker options set no absolute control_folder, so kombu "
            "would write ./control into the project: set it under CELERY_BROKER_FOLDER"
        )


def test_celery_roles_pass_only_options_celery_accepts(tmp_path):
    from celery.bin.beat import beat
    from celery.bin.celery import celery
    from celery.bin.worker import worker

    def accepted(*commands: Any) -> set[str]:
        return {name for command in commands for param in command.params for name in param.opts}

    env = process_env(tmp_path)
    for role, command in (("worker", worker), ("gpu-worker", worker), ("beat", beat)):
        argv = entrypoint_argv(role, env=env)
        flags = {arg for arg in argv if arg.startswith("-")}
        assert flags <= accepted(celery, command), (role, flags - accepted(celery, command))


# The gpu worker is the same command with other options (checked above): starting it too would
# add seconds for nothing.
@pytest.mark.parametrize(("role", "ready"), [("worker", b" ready."), ("beat", b"beat: Starting")])
def test_celery_roles_start_and_stop_cleanly_on_sigterm(tmp_path, role, ready):
    env = process_env(tmp_path, CELERY_BROKER_FOLDER=str(tmp_path / "broker"))
    _celery_preconditions(env)
    log = tmp_path / f"{role}.log"
    with started(role, env, log) as process:
        wait_for(lambda: ready in log.read_bytes(), process, log, seconds=25)
        stop(process, log)
