"""Fixtures for the API tests: a world of two projects with ready snapshots, checkpoints and
queued runs, tokens made through api.tokens, and an authenticated client helper."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from api.models import Scope
from api.tokens import create_token
from labeling.importers import ImportKind, import_file
from labeling.models import Project, Role, Snapshot
from labeling.snapshots import build_snapshot, request_snapshot
from tests.conftest import make_user
from training.models import Checkpoint, TrainingRun
from training.services import register_base_model, start_run

ALL_SCOPES = list(Scope.values)


@pytest.fixture(autouse=True)
def artifacts(settings: Any, tmp_path: Any) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


def preferences_jsonl(count: int, prefix: str) -> bytes:
    return "\n".join(
        json.dumps(
            {
                "prompt": f"{prefix} question {index}?",
                "chosen": f"A careful answer {index}.",
                "rejected": f"A sloppy answer {index}!",
            }
        )
        for index in range(count)
    ).encode()


@dataclass
class ProjectWorld:
    project: Project
    snapshot: Snapshot
    checkpoint: Checkpoint
    run: TrainingRun


def build_project_world(make_project: Any, name: str, members: dict[Any, str]) -> ProjectWorld:
    project = make_project(name, pairs=2, members=members)
    import_file(project, preferences_jsonl(6, name), "prefs.jsonl", ImportKind.PREFERENCES)
    snapshot = build_snapshot(request_snapshot(project, "every_vote").id)
    assert snapshot is not None
    checkpoint = register_base_model(project, f"models/{name}-base")
    run = start_run(snapshot, checkpoint, {})
    return ProjectWorld(project, snapshot, checkpoint, run)


@dataclass
class World:
    owner: Any  # admin of both projects
    home: ProjectWorld  # the project the tokens are made for
    other: ProjectWorld  # a project the owner also administers, outside the tokens

    def token(
        self,
        scopes: list[str] | None = None,
        projects: list[Project] | None = None,
        user: Any = None,
        **kwargs: Any,
    ) -> str:
        return create_token(
            user or self.owner,
            "test token",
            ALL_SCOPES if scopes is None else scopes,
            projects or [self.home.project],
            **kwargs,
        ).secret


@pytest.fixture
def world(make_project: Any) -> World:
    owner = make_user("token_owner")
    home = build_project_world(make_project, "Home", {owner: Role.ADMIN})
    other = build_project_world(make_project, "Other", {owner: Role.ADMIN})
    return World(owner, home, other)


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.fixture
def api_client() -> Client:
    return Client()


def expired(world: World) -> str:
    new = create_token(world.owner, "old", ALL_SCOPES, [world.home.project])
    type(new.token).objects.filter(id=new.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return new.secret


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Users are made with passwords; the production hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
