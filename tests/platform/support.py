"""Helpers for the deployment tests: the compose file, its interpolation, the entrypoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
PLATFORM = ROOT / "platform"
ENTRYPOINT = PLATFORM / "entrypoint.sh"
DOCKERFILE = PLATFORM / "Dockerfile"

# What an operator puts in .env: the variables compose.yaml marks as required.
SAMPLE_ENV = {
    "POSTGRES_PASSWORD": "pg-password-0123456789",
    "REDIS_PASSWORD": "redis-password-0123456789",
    "ALLOWED_HOSTS": "preflab.example.org",
}

# The services built from platform/Dockerfile's application stage.
APP_SERVICES = ("migrate", "web", "worker", "gpu-worker", "beat")

# Settings the tests must not inherit from the shell that runs them.
_SCRUBBED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_FOLDER",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DEBUG",
    "ALLOWED_HOSTS",
    "ARTIFACT_ROOT",
    "DJANGO_SETTINGS_MODULE",
    "PYTHONPATH",
    "PORT",
    "BIND_HOST",
    "WEB_CONCURRENCY",
    "WORKER_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "SECURE_SSL_REDIRECT",
)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(KeyError):
    """A `${NAME:?message}` variable was unset, as `docker compose` would refuse it."""


def load_compose() -> dict[str, Any]:
    """compose.yaml as YAML: anchors and `<<` merge keys resolved, variables not yet."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (`$$`, `$NAME`, `${NAME}`, `:-`, `-`, `:?`, `?`)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        usable = present and (env[name] != "" or op in ("-", "?"))
        if op in (":-", "-"):
            return env[name] if usable else arg
        if op in (":?", "?"):
            if not usable:
                raise MissingVariableError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def resolved_compose(env: Mapping[str, str] = SAMPLE_ENV) -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with this .env."""
    resolved = interpolate(load_compose(), env)
    assert isinstance(resolved, dict)
    return resolved


def process_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment for running the entrypoint as a plain process from the repository root:
    this interpreter's bin directory on PATH, production settings, state under tmp_path."""
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env = {key: value for key, value in env.items() if not key.startswith("PREFLAB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PREFLAB_VAR_DIR=str(tmp_path / "var"),
        ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        DEBUG="false",
        SECRET_KEY="platform-test-secret-" + "k" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        CELERY_BROKER_URL="filesystem://",
    )
    env.update(overrides)
    return env


def entrypoint_argv(role: str, *extra: str, env: Mapping[str, str]) -> list[str]:
    """The command the entrypoint would exec for ROLE (its dry-run mode prints it)."""
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), role, *extra],
        cwd=ROOT,
        env={**env, "PREFLAB_ENTRYPOINT_DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def option(argv: list[str], name: str) -> str:
    """The value following NAME in argv."""
    assert name in argv, f"{name} not in {argv}"
    return argv[argv.index(name) + 1]
