"""Token services: make (secret returned once), revoke, and resolve a presented secret."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from api.models import ApiToken, Scope
from labeling.models import Membership, Project

SECRET_PREFIX = "plk_"
PREFIX_LENGTH = 12  # "plk_" and 8 characters of the secret: enough to tell tokens apart
# Writing last_used_at on every request would turn reads into writes; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(ValueError):
    """The token cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown to the user once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    user: User,
    name: str,
    scopes: Iterable[str],
    projects: Iterable[Project],
    expires_at: datetime | None = None,
) -> NewToken:
    scope_list = sorted(set(scopes))
    unknown = [scope for scope in scope_list if scope not in Scope.values]
    if unknown:
        raise TokenRefused(f"Unknown scopes: {', '.join(unknown)}.")
    if not scope_list:
        raise TokenRefused("Choose at least one scope.")
    project_list = list(projects)
    if not project_list:
        raise TokenRefused("Choose at least one project.")
    member_of = set(
        Membership.objects.filter(user=user, project__in=project_list).values_list(
            "project_id", flat=True
        )
    )
    if any(project.pk not in member_of for project in project_list):
        raise TokenRefused("A token can only reach projects you are a member of.")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenRefused("The expiry date must be in the future.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name.strip() or "API token",
            prefix=secret[:PREFIX_LENGTH],
            secret_sha256=hash_secret(secret),
            scopes=scope_list,
            expires_at=expires_at,
        )
        token.projects.set(project_list)
    return NewToken(token, secret)


def revoke_token(token: ApiToken) -> bool:
    """Revoke at once; False if it was already revoked."""
    return bool(
        ApiToken.objects.filter(id=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def find_token(secret: str) -> ApiToken | None:
    """The token a secret belongs to (revoked and expired ones included), or None."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(secret_sha256=hash_secret(secret)).first()


def touch_token(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(id=token.pk).update(last_used_at=now)
        token.last_used_at = now


def list_user_tokens(user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).prefetch_related("projects").order_by("-id")


def token_memberships(token: ApiToken) -> QuerySet[Membership]:
    """Memberships the token can use now: its projects where its user is still a member."""
    return Membership.objects.filter(
        user_id=token.user_id, project__in=token.projects.all()
    ).select_related("project")
