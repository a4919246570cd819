"""Settings come from the environment; production refuses unsafe defaults."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import env_bool, env_int

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    dropped = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_with_a_real_secret():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="a-real-secret-" + "x" * 60,
        ALLOWED_HOSTS="preflab.example.org",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_with_the_placeholder_secret():
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_env_bool_rejects_anything_but_true_or_false(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ValueError, match="FLAG='maybe' is not a boolean"):
        env_bool("FLAG", False)
    monkeypatch.setenv("FLAG", "False")
    assert env_bool("FLAG", True) is False


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("COUNT", "ten")
    with pytest.raises(ValueError, match="COUNT='ten'"):
        env_int("COUNT", 1)


def test_debug_defaults_to_false_so_the_placeholder_secret_is_refused():
    # No DEBUG in the environment, and the project's own settings (not the tests' module).
    result = manage("check", DJANGO_SETTINGS_MODULE="config.settings")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is false" in result.stderr


SOURCE_DIRS = ("config", "labeling", "training", "workers", "api", "core", "bench")
ENV_READERS = {"env_str", "env_bool", "env_int", "env_list"}


def _python_sources() -> list[Path]:
    return [
        path
        for folder in SOURCE_DIRS
        if (ROOT / folder).is_dir()
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
    ]


def _environment_names(tree: ast.AST) -> set[str]:
    """Variables read with config.env's readers, os.environ.get/[], or os.getenv."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            on = getattr(getattr(func, "value", None), "attr", "") or getattr(
                getattr(func, "value", None), "id", ""
            )
            reads_env = (
                called in ENV_READERS or called == "getenv" or (called == "get" and on == "environ")
            )
            first = node.args[0]
            if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        if (
            isinstance(node, ast.Subscript)
            and getattr(node.value, "attr", "") == "environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.ctx, ast.Load)
        ):
            names.add(str(node.slice.value))
    return {name for name in names if name.isupper()}


def test_every_environment_variable_read_is_documented_in_env_example():
    documented = (ROOT / ".env.example").read_text(encoding="utf-8")
    read: dict[str, str] = {}
    for path in _python_sources():
        for name in _environment_names(ast.parse(path.read_text(encoding="utf-8"))):
            read.setdefault(name, str(path.relative_to(ROOT)))
    # Set by the machinery, not by an operator: Django's, pytest-xdist's and the tests' own
    # switches, and the rank the engine's process launcher gives each of its processes.
    internal = {
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "PREFLAB_REQUIRE_SERVICES",
        "PYTEST_XDIST_WORKER",
        "RANK",
    }
    missing = {
        name: where
        for name, where in read.items()
        if name not in internal and not re.search(rf"\b{re.escape(name)}\b", documented)
    }
    assert "DEBUG" in read and "TRUSTED_PROXIES" in read  # the scan finds the settings
    assert not missing, f"read but not documented in .env.example: {missing}"


def test_every_setting_the_code_reads_is_declared():
    from django.conf import settings

    used: dict[str, str] = {}
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = ""
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "settings"
            ):
                name = node.attr
            elif (  # getattr(settings, "NAME", default)
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "settings"
                and isinstance(node.args[1], ast.Constant)
            ):
                name = str(node.args[1].value)
            if name.isupper():
                used.setdefault(name, str(path.relative_to(ROOT)))
    undeclared = {name: where for name, where in used.items() if not hasattr(settings, name)}
    assert "PREFLAB_LEASE_SECONDS" in used
    assert not undeclared, f"read from django.conf.settings but never declared: {undeclared}"
