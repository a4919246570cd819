"""Opaque keyset cursors: a page continues after the last id the previous page gave.

Keyset, not offset: pages stay stable while rows are added, and the cost of a page does not
grow with its depth. Cursors are opaque to clients (base64 of a versioned position).
"""

from __future__ import annotations

import base64
import binascii
from typing import TypeVar

from django.db.models import Model, QuerySet

from api.errors import ApiError

M = TypeVar("M", bound=Model)

_VERSION = "v1"


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_VERSION}:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        version, _, value = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        position = int(value)
    except (binascii.Error, UnicodeError, ValueError):
        position = -1
        version = ""
    if version != _VERSION or position < 0:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API gave out.")
    return position


def keyset_page(
    queryset: QuerySet[M], cursor: str | None, limit: int, *, descending: bool
) -> tuple[list[M], str | None]:
    """One page ordered by id (newest first when descending) and the cursor for the next."""
    after = decode_cursor(cursor)
    if after is not None:
        queryset = queryset.filter(id__lt=after) if descending else queryset.filter(id__gt=after)
    rows = list(queryset.order_by("-id" if descending else "id")[: limit + 1])
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].pk)
    return rows, None
