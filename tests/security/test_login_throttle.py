"""Login throttling (django-axes) on the site's login and the admin's: N failures for one user
name or from one address lock it out with a clear message; staff can unlock."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def limits(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = 3


@pytest.fixture
def victim(db: None) -> Any:
    return get_user_model().objects.create_user("victim", password="right-password")


def attempt(client: Client, url: str, username: str, password: str, address: str) -> Any:
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_failures_for_one_user_lock_it_even_with_the_right_password(victim, url) -> None:
    client = Client()
    for number in range(3):
        # Every failure from a different address: the user name is counted on its own.
        response = attempt(client, url, "victim", "wrong", f"10.0.0.{number + 1}")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    locked = attempt(client, url, "victim", "right-password", "10.0.0.99")
    assert locked.status_code == 429
    assert "locked for 15 minutes" in locked.content.decode()
    assert locked["Retry-After"] == str(15 * 60)
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_failures_from_one_address_lock_it_for_every_user(victim) -> None:
    client = Client()
    for number in range(3):
        attempt(client, LOGIN, f"guess{number}", "wrong", "203.0.113.7")
    assert attempt(client, LOGIN, "victim", "right-password", "203.0.113.7").status_code == 429
    # Another address is not locked, and the right password works there.
    response = attempt(Client(), LOGIN, "victim", "right-password", "203.0.113.8")
    assert response.status_code == 302


@pytest.mark.django_db
def test_fewer_failures_than_the_limit_still_log_in(victim) -> None:
    client = Client()
    for _ in range(2):
        assert attempt(client, LOGIN, "victim", "wrong", "10.1.1.1").status_code == 200
    assert attempt(client, LOGIN, "victim", "right-password", "10.1.1.1").status_code == 302


@pytest.mark.django_db
def test_staff_unlock_with_axes_reset(victim) -> None:
    client = Client()
    for _ in range(3):
        attempt(client, LOGIN, "victim", "wrong", "10.2.2.2")
    assert AccessAttempt.objects.filter(username="victim").exists()
    call_command("axes_reset_username", "victim")
    assert attempt(client, LOGIN, "victim", "right-password", "10.2.2.3").status_code == 302


@pytest.mark.django_db
def test_a_spoofed_forwarded_for_does_not_dodge_the_address_limit(victim) -> None:
    client = Client()
    for number in range(3):
        client.post(
            LOGIN,
            {"username": f"guess{number}", "password": "wrong"},
            REMOTE_ADDR="198.51.100.9",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{number}",
        )
    response = attempt(client, LOGIN, "victim", "right-password", "198.51.100.9")
    assert response.status_code == 429
