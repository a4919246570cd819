"""API tokens: stored hashed, shown once, limited to the owner's projects; the token pages;
per-token rate limits."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.test import override_settings

from api.models import ApiToken
from api.ratelimit import parse_rate
from api.tokens import TokenRefused, create_token
from labeling.models import Role
from labeling.services import add_member
from tests.api.conftest import World, bearer
from tests.conftest import make_user

pytestmark = pytest.mark.urls("tests.api.urls")
PAGE = "/account/tokens/"


@pytest.mark.django_db
def test_only_the_hash_of_the_secret_is_stored(world: World) -> None:
    new = create_token(world.owner, "ci", ["read"], [world.home.project])
    stored = ApiToken.objects.get(id=new.token.id)
    assert stored.secret_sha256 == hashlib.sha256(new.secret.encode()).hexdigest()
    assert new.secret not in {str(value) for value in stored.__dict__.values()}
    assert new.secret.startswith(stored.prefix)


@pytest.mark.django_db
def test_a_token_cannot_reach_a_project_its_owner_is_not_in(world: World, make_project) -> None:
    stranger = make_project("Stranger", pairs=0)
    with pytest.raises(TokenRefused):
        create_token(world.owner, "x", ["read"], [stranger])
    with pytest.raises(TokenRefused):
        create_token(world.owner, "x", ["delete_everything"], [world.home.project])


@pytest.mark.django_db
def test_token_page_needs_login(client) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_create_shows_the_secret_once_and_it_works(world: World, client) -> None:
    client.force_login(world.owner)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "Other" in page.content.decode()  # both of the owner's projects are offered
    response = client.post(
        PAGE,
        {
            "name": "laptop",
            "scopes": ["read"],
            "projects": [world.home.project.id],
            "expires": "30",
        },
    )
    # Post/redirect/get: the secret is not in the redirect's URL, and reloading makes nothing.
    assert response.status_code == 303 and response["Location"] == PAGE
    assert "plk_" not in response["Location"]
    shown = client.get(PAGE)
    assert "no-store" in shown["Cache-Control"]
    secret = re.search(r'value="(plk_[^"]+)"', shown.content.decode()).group(1)
    assert 'type="checkbox" name="scopes" value="read" checked' not in shown.content.decode()
    api = client.get("/api/v1/projects", **bearer(secret))
    assert [item["name"] for item in api.json()["items"]] == ["Home"]
    again = client.get(PAGE).content.decode()
    assert secret not in again
    assert secret[:12] in again
    assert ApiToken.objects.filter(user=world.owner).count() == 1


@pytest.mark.django_db
def test_the_new_secret_is_never_shown_to_another_user(world: World, client) -> None:
    client.force_login(world.owner)
    client.post(PAGE, {"name": "laptop", "scopes": ["read"], "projects": [world.home.project.id]})
    other = make_user("cookie_thief")
    client.force_login(other)  # the owner's browser cookie stays in this client
    assert "plk_" not in client.get(PAGE).content.decode().split("Your tokens")[0]


@pytest.mark.django_db
def test_invalid_form_gets_400_with_errors(world: World, client) -> None:
    client.force_login(world.owner)
    response = client.post(PAGE, {"name": "", "scopes": [], "expires": "30"})
    assert response.status_code == 400
    assert 'class="errorlist' in response.content.decode()
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_project_the_user_is_not_in_cannot_be_chosen(world: World, client, make_project) -> None:
    stranger = make_project("Stranger", pairs=0)
    client.force_login(world.owner)
    response = client.post(
        PAGE, {"name": "x", "scopes": ["read"], "projects": [stranger.id], "expires": "30"}
    )
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_revoke_stops_the_token_at_once(world: World, client) -> None:
    new = create_token(world.owner, "ci", ["read"], [world.home.project])
    assert client.get("/api/v1/projects", **bearer(new.secret)).status_code == 200
    client.force_login(world.owner)
    response = client.post(f"{PAGE}{new.token.id}/revoke/")
    assert response.status_code == 303
    revoked = client.get("/api/v1/projects", **bearer(new.secret))
    assert (revoked.status_code, revoked.json()["error"]["code"]) == (401, "revoked_token")


@pytest.mark.django_db
def test_users_see_and_revoke_only_their_own_tokens(world: World, client) -> None:
    new = create_token(world.owner, "owner's secret name", ["read"], [world.home.project])
    other = make_user("someone_else")
    add_member(world.home.project, other, Role.ADMIN)
    client.force_login(other)
    assert "owner&#x27;s secret name" not in client.get(PAGE).content.decode()
    assert client.post(f"{PAGE}{new.token.id}/revoke/").status_code == 404
    assert ApiToken.objects.get(id=new.token.id).revoked_at is None


@pytest.mark.django_db
def test_rate_limit_answers_429_with_retry_after(world: World, client) -> None:
    secret = world.token(["read", "export"])
    snapshot_url = f"/api/v1/snapshots/{world.home.snapshot.id}/files/jsonl"
    with override_settings(PREFLAB_API_RATE_LIMIT="3/minute"):
        statuses = [client.get("/api/v1/projects", **bearer(secret)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/api/v1/projects", **bearer(secret))
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited["Retry-After"]) <= 60
        # Downloads count in their own bucket: API polling does not starve them.
        assert client.get(snapshot_url, **bearer(secret)).status_code == 200
        # Another token has its own budget.
        assert client.get("/api/v1/projects", **bearer(world.token(["read"]))).status_code == 200


@pytest.mark.django_db
def test_download_rate_limit_is_separate(world: World, client) -> None:
    secret = world.token(["read", "export"])
    snapshot_url = f"/api/v1/snapshots/{world.home.snapshot.id}/files/jsonl"
    with override_settings(PREFLAB_API_DOWNLOAD_RATE_LIMIT="2/hour"):
        statuses = [client.get(snapshot_url, **bearer(secret)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert client.get("/api/v1/projects", **bearer(secret)).status_code == 200


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("600/minute", (600, 60)),
        ("10/5s", (10, 5)),
        ("1000/hour", (1000, 3600)),
        ("5/d", (5, 86400)),
    ],
)
def test_parse_rate(rate: str, parsed: tuple[int, int]) -> None:
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["600", "x/minute", "10/fortnight", "0/minute"])
def test_parse_rate_refuses_nonsense(rate: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(rate)
