"""Every API error is `{"error": {"code", "message", "details"}}` with a stable code.

Codes are part of the API contract (docs/api.md lists them); messages are for people and may
change.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

logger = logging.getLogger(__name__)


class ErrorDetail(Schema):
    code: str
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorDetail


class ApiError(Exception):
    """Raise anywhere in an endpoint; the API turns it into the JSON error answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


BEARER_CHALLENGE = 'Bearer realm="preflab"'


def unauthorized(code: str, message: str) -> ApiError:
    challenge = f'{BEARER_CHALLENGE}, error="invalid_token"' if code != "missing_token" else ""
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge or BEARER_CHALLENGE})


def not_found(what: str = "object") -> ApiError:
    # The same answer whether the object does not exist or belongs to a project the token
    # cannot see, so ids do not leak.
    return ApiError(404, "not_found", f"No such {what}.")


# Error answers every endpoint may give; endpoints add their own (409, 413, 416, ...).
COMMON_ERRORS: dict[int, type[ErrorOut]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
}


def error_responses(*extra: int) -> dict[int, type[ErrorOut]]:
    return {**COMMON_ERRORS, **dict.fromkeys(extra, ErrorOut)}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> HttpResponse:
    import json

    body = {"error": {"code": code, "message": message, "details": details}}
    response = HttpResponse(
        json.dumps(body, default=str), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


_HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    429: "rate_limited",
}


def _clean_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's error dicts can hold exceptions and raw input; keep what a client can use."""
    return [
        {
            # ninja puts the parameter's name after "body"; clients know fields, not that name
            "loc": [
                str(part)
                for index, part in enumerate(error.get("loc", ()))
                if not (index == 1 and error["loc"][0] == "body" and len(error["loc"]) > 2)
            ],
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


def install_error_handlers(api: NinjaAPI) -> None:
    def on_api_error(request: HttpRequest, exc: Any) -> HttpResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    def on_validation_error(request: HttpRequest, exc: Any) -> HttpResponse:
        details = _clean_validation_errors(list(exc.errors))
        fields = ", ".join(".".join(error["loc"]) for error in details) or "the request"
        return error_response(422, "invalid_input", f"Invalid input: {fields}.", details)

    def on_auth_error(request: HttpRequest, exc: Any) -> HttpResponse:
        return error_response(
            401,
            "missing_token",
            "Send an API token: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": BEARER_CHALLENGE},
        )

    def on_http_error(request: HttpRequest, exc: Any) -> HttpResponse:
        code = _HTTP_ERROR_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc))

    def on_not_found(request: HttpRequest, exc: Any) -> HttpResponse:
        return error_response(404, "not_found", "Not found.")

    def on_too_big(request: HttpRequest, exc: Any) -> HttpResponse:
        return error_response(413, "request_too_large", str(exc))

    def on_suspicious(request: HttpRequest, exc: Any) -> HttpResponse:
        return error_response(400, "bad_request", "The request could not be read.")

    def on_unexpected(request: HttpRequest, exc: Any) -> HttpResponse:
        logger.exception("API error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Something went wrong on our side.")

    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(ValidationError, on_validation_error)
    api.add_exception_handler(AuthenticationError, on_auth_error)
    api.add_exception_handler(HttpError, on_http_error)
    api.add_exception_handler(Http404, on_not_found)
    api.add_exception_handler(RequestDataTooBig, on_too_big)
    api.add_exception_handler(SuspiciousOperation, on_suspicious)
    api.add_exception_handler(Exception, on_unexpected)
