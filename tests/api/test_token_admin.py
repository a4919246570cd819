"""The admin may revoke a token, never bring it back, extend it or widen it; 403s name scopes
by their value."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.models import ApiToken
from tests.api.conftest import World, bearer


@pytest.fixture
def staff_client(db: None) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.org", "pw-root")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_cannot_unrevoke_extend_or_widen_a_token(world: World, staff_client) -> None:
    secret = world.token(["read"])
    token = ApiToken.objects.latest("id")
    revoked_at = timezone.now()
    ApiToken.objects.filter(id=token.pk).update(revoked_at=revoked_at)
    url = reverse("admin:api_apitoken_change", args=[token.pk])
    page = staff_client.get(url)
    assert page.status_code == 200
    form: dict[str, Any] = {
        "name": "renamed",
        "scopes": '["read", "export", "upload", "train"]',
        "projects": [world.home.project.pk, world.other.project.pk],
        "expires_at_0": "",
        "expires_at_1": "",
        "revoked_at_0": "",
        "revoked_at_1": "",
        "_save": "Save",
    }
    staff_client.post(url, form)
    token.refresh_from_db()
    assert token.revoked_at == revoked_at
    assert token.scopes == ["read"]
    assert list(token.projects.all()) == [world.home.project]
    assert Client().get("/api/v1/projects", **bearer(secret)).status_code == 401


@pytest.mark.django_db
def test_admin_revoke_action_stops_the_token(world: World, staff_client) -> None:
    secret = world.token(["read"])
    token = ApiToken.objects.latest("id")
    assert Client().get("/api/v1/projects", **bearer(secret)).status_code == 200
    response = staff_client.post(
        reverse("admin:api_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Client().get("/api/v1/projects", **bearer(secret)).status_code == 401


@pytest.mark.django_db
def test_missing_scope_message_names_the_scope_value(world: World, client) -> None:
    response = client.post(
        f"/api/v1/projects/{world.home.project.id}/runs",
        {"snapshot_id": world.home.snapshot.id, "start_checkpoint_id": world.home.checkpoint.id},
        content_type="application/json",
        **bearer(world.token(["read"])),
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["message"] == "This API token lacks the 'train' scope."
    assert error["details"]["required_scope"] == "train"
