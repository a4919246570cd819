"""Property-based run of schemathesis against the API's own OpenAPI schema.

Every operation gets generated requests (valid and invalid parameters, bodies, multipart
uploads); every answer must be free of server errors and match the schema: a documented
status code, a documented content type, a body that validates, documented headers. Half of
the generated ids are swapped for ids of real objects the token reaches, so the success paths
(downloads, streams, imports, runs) are exercised too, not only the 404s.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.api import api
from tests.api.conftest import World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = WSGIHandler()


@pytest.fixture
def keep_test_connection() -> Any:
    """Django's WSGI handler closes the database connection after each request; the test
    client avoids that by detaching these receivers, and so must we, or the test's own
    transaction would be torn down mid-test."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def real_ids(world: World) -> dict[str, int]:
    # Ranking tasks with a human, a tied and an imported ranking, so the rankings endpoints
    # answer rows, not only empty pages.
    from labeling.models import VoteSource
    from tests.labeling.quality.ranking_data import add_ranking, make_ranking_tasks

    (task,) = make_ranking_tasks(world.home.project, 1, 3)
    add_ranking(task, world.owner, [2, [0, 1]])
    add_ranking(task, None, [0, 1, 2], source=VoteSource.IMPORTED, imported_from="r.jsonl")
    return {
        "project_id": world.home.project.id,
        "snapshot_id": world.home.snapshot.id,
        "run_id": world.home.run.id,
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_conform_to_the_schema(
    case: Any, world: World, real_ids: dict[str, int], keep_test_connection: None
) -> None:
    for name, value in (case.path_parameters or {}).items():
        generated = value if isinstance(value, int) else 0
        if name in real_ids and generated % 2 == 0:
            case.path_parameters[name] = real_ids[name]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {world.token()}"},
        checks=CHECKS,
    )
