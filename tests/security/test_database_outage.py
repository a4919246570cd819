"""While the database is down, a page answers a short 503 page, logged in one line, instead of
a traceback per request (the chained "SessionStore has no attribute _session_cache" one)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.urls import reverse


def database_down(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True])
def test_a_database_outage_answers_503_without_a_traceback(
    client, project, annotator, caplog, htmx
) -> None:
    client.force_login(annotator)
    url = reverse("labeling:annotate", args=[project.id])
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    caplog.set_level(logging.WARNING)
    with connection.execute_wrapper(database_down):
        response = client.get(url, **headers)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "PrefLab is briefly unavailable" in response.content.decode()
    assert "Traceback" not in response.content.decode()
    records = [r for r in caplog.records if r.name == "config.middleware"]
    assert [r.getMessage() for r in records] == [
        f"database unavailable: GET {url}: connection to server at 127.0.0.1 failed: "
        "Connection refused"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert "_session_cache" not in caplog.text
