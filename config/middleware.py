"""Two small middlewares at the edges of every request: proxy headers believed only from the
configured proxy, and a database outage answered with a plain 503 page."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable
from functools import cached_property

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The headers a reverse proxy sets about the client; nobody else may set them.
PROXY_HEADERS = (
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
)


def parse_networks(entries: list[str]) -> list[Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or network") from None
    return networks


class TrustedProxyMiddleware:
    """Honour X-Forwarded-Proto / X-Forwarded-For only when REMOTE_ADDR is a trusted proxy.

    From anyone else the proxy headers are dropped, so SECURE_PROXY_SSL_HEADER cannot be
    spoofed to skip the HTTPS redirect. From a trusted proxy, REMOTE_ADDR becomes the client
    address the proxy reports (the last X-Forwarded-For entry, the one the proxy itself saw),
    which is what the login throttle counts.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    @cached_property
    def trusted(self) -> list[Network]:
        return parse_networks(settings.TRUSTED_PROXIES)

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if self.is_trusted(meta.get("REMOTE_ADDR", "")):
            forwarded = meta.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
            if forwarded:
                # Not an address: keep the proxy's own.
                with contextlib.suppress(ValueError):
                    meta["REMOTE_ADDR"] = str(ipaddress.ip_address(forwarded))
        else:
            for header in PROXY_HEADERS:
                meta.pop(header, None)
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view that cannot reach the database answers 503 with a short page, logged in one line.

    During a database restart the first query of a request is usually the session load. Its
    OperationalError is raised inside Django's ``except AttributeError`` around the lazily
    filled ``SessionStore._session_cache``, so the log showed a chained
    ``AttributeError: 'SessionStore' object has no attribute '_session_cache'`` traceback
    per request; the database error is the cause, the AttributeError only its context.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "database unavailable: %s %s: %s",
            request.method,
            request.path,
            str(exception).splitlines()[0] if str(exception) else type(exception).__name__,
        )
        response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "5"
        return response
