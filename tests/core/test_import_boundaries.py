"""The import direction, checked with import-linter's contracts in pyproject.toml: labeling,
training and api never import workers (they send tasks by name through core.jobs.enqueue), and
core imports none of our apps. The engine's own boundary is tests/engine/test_isolation.py."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def ini_config(config: dict) -> str:
    """pyproject's [tool.importlinter] in import-linter's INI form."""

    def values(items: list[str]) -> str:
        return "".join(f"\n    {item}" for item in items)

    text = f"[importlinter]\nroot_packages ={values(config['root_packages'])}\n"
    for number, contract in enumerate(config["contracts"]):
        text += f"[importlinter:contract:{number}]\n"
        for key, value in contract.items():
            text += f"{key} ={values(value) if isinstance(value, list) else ' ' + value}\n"
    return text


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: pip install 'import-linter==2.16' (dev extra)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_repository_keeps_every_import_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Domain code never imports workers KEPT" in result.stdout
    assert "core imports no app of ours KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        ("training/services.py", "def go():\n    from workers.tasks import train_run\n", "workers"),
        ("api/views.py", "import workers.tasks\n", "workers"),
        ("core/jobs.py", "from labeling.models import Snapshot\n", "core imports no app"),
    ],
)
def test_the_contracts_catch_a_forbidden_import(tmp_path, module, statement, broken):
    """The same contracts on a skeleton of our packages with one forbidden import added."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    for package in config["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "workers" / "tasks.py").write_text("")
    (tmp_path / "labeling" / "models.py").write_text("")
    (tmp_path / module).write_text(statement)
    (tmp_path / ".importlinter").write_text(ini_config(config))
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and broken in result.stdout
