"""Shared fixtures: persona users and a project built through our own services.

PREFLAB_REQUIRE_SERVICES=1 (set by CI) turns every "service or browser missing" skip into a
failure, so CI cannot pass by skipping the tests that matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from labeling.importers import ImportKind, import_file
from labeling.models import Project, Role
from labeling.services import add_member

REQUIRE_SERVICES = os.environ.get("PREFLAB_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`), tests marked slow go first, so they spread over the
    workers instead of ending the run on one of them (each worker sorts the same way)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's tiny Llama model with a byte tokenizer, built once per test process (one
    per xdist worker) for every directory's tests. A child process builds it, so a test
    process that never trains does not load torch."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "training.engine", "tiny-model", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
    )
    return out


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (PREFLAB_REQUIRE_SERVICES is set, so this is a failure)")
    pytest.skip(reason)


def require_postgres() -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )


def make_user(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password="pw-" + username)


@pytest.fixture
def project_admin(db: None) -> Any:
    return make_user("admin_person")


@pytest.fixture
def annotator(db: None) -> Any:
    return make_user("annotator_person")


@pytest.fixture
def reviewer(db: None) -> Any:
    return make_user("reviewer_person")


@pytest.fixture
def outsider(db: None) -> Any:
    return make_user("outsider_person")


def pairs_jsonl(count: int, prefix: str = "Question") -> bytes:
    import json

    return "\n".join(
        json.dumps(
            {
                "prompt": f"{prefix} {index}: what is {index} + {index}?",
                "response_a": f"It is {2 * index}.",
                "response_b": f"It is {2 * index + 1}, I think.",
                "model_a": "good-model",
                "model_b": "bad-model",
            }
        )
        for index in range(count)
    ).encode()


@pytest.fixture
def make_project(db: None) -> Callable[..., Project]:
    def factory(
        name: str = "Test project",
        *,
        pairs: int = 5,
        overlap: int = 1,
        members: dict[Any, str] | None = None,
    ) -> Project:
        project = Project.objects.create(name=name, overlap=overlap, guidelines="Be **careful**.")
        for user, role in (members or {}).items():
            add_member(project, user, role)
        if pairs:
            import_file(project, pairs_jsonl(pairs, name), "pairs.jsonl", ImportKind.PAIRS)
        return project

    return factory


@pytest.fixture
def project(
    make_project: Callable[..., Project], project_admin: Any, annotator: Any, reviewer: Any
) -> Project:
    return make_project(
        members={project_admin: Role.ADMIN, annotator: Role.ANNOTATOR, reviewer: Role.REVIEWER}
    )
