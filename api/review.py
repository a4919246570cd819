"""Reviewers' decisions and annotators' flags, read through the API (reviewer or admin).

Both are keyset-paginated lists by id, oldest first, so a client can follow them as they grow
(the next page after the last id it saw). Scope: read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from api.auth import api_auth, project_membership, require_scope
from api.common import REVIEWER
from api.errors import error_responses
from api.models import Scope
from api.pagination import keyset_page
from labeling.models import Adjudication, ItemFlag

router = Router(auth=api_auth, tags=["review"])


class AdjudicationOut(Schema):
    id: int
    comparison_id: int
    round: int
    choice: Literal["A", "B", "tie", "both_bad"] = Field(
        description="The decision on the comparison's A and B (as imported, not as seen)."
    )
    note: str
    reviewer: str
    created_at: datetime
    updated_at: datetime


class AdjudicationPage(Schema):
    items: list[AdjudicationOut]
    next_cursor: str | None


class FlagOut(Schema):
    id: int
    comparison_id: int
    round: int
    kind: Literal["skip", "flag"]
    reason: Literal["unreadable", "harmful", "cannot_judge", "other"]
    note: str
    user: str = Field(description="Who skipped or flagged the comparison.")
    created_at: datetime
    resolved: bool
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str


class FlagPage(Schema):
    items: list[FlagOut]
    next_cursor: str | None


@router.get(
    "/projects/{project_id}/adjudications",
    response={200: AdjudicationPage, **error_responses()},
    url_name="adjudications",
)
def list_adjudications(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """Reviewers' decisions on comparisons (they win over the votes in exports), by id.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    rows, next_cursor = keyset_page(
        Adjudication.objects.filter(comparison__project=project).select_related(
            "reviewer", "comparison__round"
        ),
        cursor,
        limit,
        descending=False,
    )
    items = [
        {
            "id": row.pk,
            "comparison_id": row.comparison_id,
            "round": row.comparison.round.number,
            "choice": row.choice,
            "note": row.note,
            "reviewer": row.reviewer.username,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
        for row in rows
    ]
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/projects/{project_id}/flags",
    response={200: FlagPage, **error_responses()},
    url_name="flags",
)
def list_flags(
    request: HttpRequest,
    project_id: int,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    kind: Literal["skip", "flag"] | None = None,
    resolved: bool | None = None,
) -> dict[str, Any]:
    """Items annotators skipped or flagged for review, by id; `kind` and `resolved` filter.

    Scope: read; role: reviewer or admin."""
    require_scope(request, Scope.READ)
    project = project_membership(request, project_id, REVIEWER).project
    flags = ItemFlag.objects.filter(comparison__project=project).select_related(
        "user", "resolved_by", "comparison__round"
    )
    if kind is not None:
        flags = flags.filter(kind=kind)
    if resolved is not None:
        flags = flags.filter(resolved_at__isnull=not resolved)
    rows, next_cursor = keyset_page(flags, cursor, limit, descending=False)
    items = [
        {
            "id": row.pk,
            "comparison_id": row.comparison_id,
            "round": row.comparison.round.number,
            "kind": row.kind,
            "reason": row.reason,
            "note": row.note,
            "user": row.user.username,
            "created_at": row.created_at,
            "resolved": row.resolved_at is not None,
            "resolved_by": row.resolved_by.username if row.resolved_by else None,
            "resolved_at": row.resolved_at,
            "resolution": row.resolution,
        }
        for row in rows
    ]
    return {"items": items, "next_cursor": next_cursor}
