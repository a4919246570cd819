"""The worker liveness check: the file's age decides, the command and compose use it.
The guard stopping a real worker is tests/workers/test_broker_restart.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from core.liveness import check_alive
from tests.platform.support import ROOT, entrypoint_argv, process_env, resolved_compose


def test_a_fresh_file_is_alive_a_stale_or_missing_one_is_not(tmp_path):
    path = tmp_path / "alive"
    assert check_alive(path, timeout=10) == (
        False,
        f"{path} does not exist: the worker has not started consuming",
    )
    path.touch()
    alive, message = check_alive(path, timeout=10)
    assert alive and message.startswith("alive")
    old = time.time() - 11
    os.utime(path, (old, old))
    alive, message = check_alive(path, timeout=10)
    assert not alive and "stopped consuming" in message


def run_command(path, tmp_path):
    env = {
        **os.environ,
        "PREFLAB_WORKER_ALIVE_FILE": str(path),
        "PREFLAB_WORKER_ALIVE_TIMEOUT_SECONDS": "600",
        "PREFLAB_VAR_DIR": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "manage.py", "worker_alive"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_the_command_exits_by_the_file(tmp_path):
    path = tmp_path / "alive"
    missing = run_command(path, tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    path.touch()
    fresh = run_command(path, tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "alive" in fresh.stdout


def test_compose_checks_both_workers_with_the_worker_alive_role(tmp_path):
    services = resolved_compose()["services"]
    for name in ("worker", "gpu-worker"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "preflab", "worker-alive"]
        assert services[name]["restart"] == "unless-stopped"
    argv = entrypoint_argv("worker-alive", env=process_env(tmp_path))
    assert argv[-2:] == ["manage.py", "worker_alive"]
