"""Opaque keyset cursors: a page continues after the last id the previous page gave.

Keyset, not offset: pages stay stable while rows are added, and the cost of a page does not
grow with its depth. Cursors are opaque to clients (base64 of a versioned position).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpRequest, StreamingHttpResponse

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


# JSON-lines endpoints page with a cursor too; it travels in headers, since the body is rows.
NEXT_CURSOR_HEADER = "X-Next-Cursor"


def json_lines_openapi(row_model: Any) -> dict[str, Any]:
    """The OpenAPI answer of a JSON-lines endpoint whose lines are `row_model` objects."""
    return {
        "responses": {
            "200": {
                "description": (
                    f"One JSON object per line (see {row_model.__name__}). When more rows "
                    f"follow, the {NEXT_CURSOR_HEADER} header holds the cursor of the next page "
                    'and Link has its URL (rel="next"); on the last page both are absent.'
                ),
                "headers": {
                    NEXT_CURSOR_HEADER: {"schema": {"type": "string"}, "required": False},
                    "Link": {"schema": {"type": "string"}, "required": False},
                },
                "content": {"application/x-ndjson": {"schema": row_model.model_json_schema()}},
            }
        }
    }


def json_lines_response(
    request: HttpRequest, lines: Iterator[bytes], next_cursor: str | None
) -> StreamingHttpResponse:
    """Stream the lines; when a next page exists, name its cursor and URL in the headers."""
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    if next_cursor:
        query = request.GET.copy()
        query["cursor"] = next_cursor
        response[NEXT_CURSOR_HEADER] = next_cursor
        response["Link"] = (
            f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
        )
    return response
