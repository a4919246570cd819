"""Bearer-token authentication, scope and project checks shared by every endpoint.

Order of checks, and what each failure answers:
1. token missing, unknown, revoked, expired, or its user deactivated: 401 (WWW-Authenticate);
2. per-token rate limit: 429 with Retry-After;
3. the endpoint's scope missing from the token: 403 `missing_scope`;
4. the object's project not among the token's projects, or its user no longer a member: 404,
   the same answer as for an object that does not exist;
5. the user's role in that project too low for the action: 403 `insufficient_role`.
"""

from __future__ import annotations

from typing import cast

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja.security import HttpBearer

from api.errors import ApiError, not_found, unauthorized
from api.models import ApiToken
from api.ratelimit import check_rate
from api.tokens import find_token, token_memberships, touch_token
from labeling.models import Membership, Role

ROLE_RANK = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}


class TokenAuth(HttpBearer):
    """`Authorization: Bearer plk_...`; `bucket` picks the rate-limit bucket (see ratelimit)."""

    def __init__(self, bucket: str = "api") -> None:
        super().__init__()
        self.bucket = bucket

    def __call__(self, request: HttpRequest) -> ApiToken:
        header = request.headers.get("Authorization", "")
        if not header.strip():
            raise unauthorized("missing_token", "Send an API token: Authorization: Bearer <token>.")
        scheme, _, secret = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise unauthorized(
                "invalid_token", "Use the Bearer scheme: Authorization: Bearer <token>."
            )
        return self.authenticate(request, secret.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        found = find_token(token)
        if found is None or not found.user.is_active:
            raise unauthorized("invalid_token", "The API token is not valid.")
        if found.is_revoked:
            raise unauthorized("revoked_token", "The API token has been revoked.")
        if found.is_expired:
            raise unauthorized("expired_token", "The API token has expired.")
        retry_after = check_rate(self.bucket, str(found.pk))
        if retry_after is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests for this token; retry in {retry_after} s.",
                details={"bucket": self.bucket, "retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
        touch_token(found)
        return found


api_auth = TokenAuth("api")
download_auth = TokenAuth("download")


def request_token(request: HttpRequest) -> ApiToken:
    return cast(ApiToken, request.auth)  # type: ignore[attr-defined]


def require_scope(request: HttpRequest, scope: str) -> ApiToken:
    token = request_token(request)
    if not token.has_scope(scope):
        name = str(scope)  # a Scope's str() is its value, e.g. "upload"
        raise ApiError(
            403,
            "missing_scope",
            f"This API token lacks the '{name}' scope.",
            details={"required_scope": name, "token_scopes": token.scopes},
        )
    return token


def visible_memberships(request: HttpRequest) -> QuerySet[Membership]:
    return token_memberships(request_token(request))


def project_membership(request: HttpRequest, project_id: int, min_role: str) -> Membership:
    """The token user's membership of a project the token reaches; 404 otherwise."""
    membership = visible_memberships(request).filter(project_id=project_id).first()
    if membership is None:
        raise not_found("project")
    if ROLE_RANK[Role(membership.role)] < ROLE_RANK[Role(min_role)]:
        raise ApiError(
            403,
            "insufficient_role",
            f"Your role in this project is {membership.role}; this needs {min_role} or above.",
            details={"role": membership.role, "required_role": min_role},
        )
    return membership
