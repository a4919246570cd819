"""Outbound HTTP for LLM judges: an allow-list of hosts, and retries that respect Retry-After.

A judge endpoint is a server-side request made on an admin's say-so, so:
- the URL's host must be named in PREFLAB_JUDGE_ALLOWED_HOSTS (host names, IP addresses or
  CIDR networks, comma-separated; "*.example.com" matches sub-domains);
- every address the host resolves to is checked: loopback, link-local (which holds the cloud
  metadata service 169.254.169.254), private, unspecified, multicast and reserved addresses are
  refused unless the allow-list names that address or a network containing it explicitly
  (an allowed *host name* resolving to 127.0.0.1 is still refused);
- redirects are not followed.
The request is then sent to the checked address itself (pin_url: the host name goes in the
Host header and, over https, as the TLS server name), so a DNS server that answers differently
a second time (rebinding) cannot redirect it.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from judging.kinds import TIME_LIMIT

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 60.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class URLRefused(ValueError):
    """The judge's URL is not allowed; the message says why."""


def _networks(entries: list[str]) -> list[IPNetwork]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            continue  # a host name
    return networks


def _host_allowed(host: str, entries: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in entries:
        entry = entry.lower().strip("[]").rstrip(".")
        if entry.startswith("*.") and (host.endswith(entry[1:]) and host != entry[2:]):
            return True
        if host == entry:
            return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in _networks(entries))


def _special(address: IPAddress) -> bool:
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise URLRefused(f"judge URL host {host!r} does not resolve: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class PinnedURL:
    """A checked URL with its host replaced by the address that was checked, so the request
    goes where the check looked (no second DNS answer); the name travels in the Host header
    and, over https, as the TLS server name (certificates are verified against it)."""

    url: str
    host_header: str
    server_name: str | None


def pin_url(url: str, allowed: list[str] | None = None) -> PinnedURL:
    """check_url(), then the URL pinned to the first checked address (IPv4 first)."""
    parts = urlsplit(url)
    addresses = _checked_addresses(url, allowed)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # already an address
        return PinnedURL(url, parts.netloc, None)
    address = sorted(addresses, key=lambda a: a.version)[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return PinnedURL(pinned, parts.netloc, host if parts.scheme == "https" else None)


def check_url(url: str, allowed: list[str] | None = None) -> str:
    """The URL if a judge may call it; URLRefused naming the reason otherwise."""
    _checked_addresses(url, allowed)
    return url


def _checked_addresses(url: str, allowed: list[str] | None) -> list[IPAddress]:
    entries = list(settings.PREFLAB_JUDGE_ALLOWED_HOSTS if allowed is None else allowed)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise URLRefused(f"judge URL {url!r} must start with http:// or https://.")
    if parts.username or parts.password:
        raise URLRefused("judge URL must not carry credentials; name an API key variable.")
    host = parts.hostname
    if not host:
        raise URLRefused(f"judge URL {url!r} has no host.")
    if not _host_allowed(host, entries):
        raise URLRefused(
            f"judge URL host {host!r} is not in PREFLAB_JUDGE_ALLOWED_HOSTS "
            f"({', '.join(entries) or 'empty'})."
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise URLRefused(f"judge URL {url!r} has an invalid port.") from None
    networks = _networks(entries)
    checked: list[IPAddress] = []
    for address in resolve_addresses(host, port):
        mapped = getattr(address, "ipv4_mapped", None) or address
        if _special(mapped) and not any(mapped in network for network in networks):
            raise URLRefused(
                f"judge URL host {host!r} resolves to {mapped}, a loopback, link-local, "
                "private or reserved address; allow it by naming the address or its network "
                "in PREFLAB_JUDGE_ALLOWED_HOSTS."
            )
        checked.append(address)
    return checked


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


class CallFailed(RuntimeError):
    """A judge call failed for good (retries exhausted, a 4xx, the time limit)."""

    def __init__(self, message: str, calls: int) -> None:
        super().__init__(message)
        self.calls = calls


@dataclass
class Response:
    body: dict[str, Any]
    calls: int


class RetryingClient:
    """POSTs JSON with retries: 429 and 5xx (and timeouts, connection errors) are retried up to
    `max_retries` times, waiting Retry-After when the server sends it, else exponential backoff
    with jitter; nothing is started past `deadline` (time.monotonic())."""

    def __init__(
        self,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
        concurrency: int,
        headers: dict[str, str],
    ) -> None:
        self.max_retries = max_retries
        self.backoff = backoff
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers=headers,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def close(self) -> None:
        self.client.close()

    def post_json(self, url: PinnedURL, payload: dict[str, Any], deadline: float) -> Response:
        headers = {"Host": url.host_header}
        extensions = {"sni_hostname": url.server_name} if url.server_name else {}
        calls = 0
        attempt = 0
        while True:
            if time.monotonic() >= deadline:
                raise CallFailed(TIME_LIMIT, calls)
            calls += 1
            wait: float | None = None
            try:
                answer = self.client.post(
                    url.url, json=payload, headers=headers, extensions=extensions
                )
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                if answer.status_code < 300:
                    try:
                        body = answer.json()
                    except ValueError:
                        raise CallFailed("the endpoint answered with invalid JSON", calls) from None
                    if not isinstance(body, dict):
                        raise CallFailed("the endpoint answered JSON that is not an object", calls)
                    return Response(body, calls)
                if answer.status_code not in RETRY_STATUSES:
                    raise CallFailed(f"the endpoint answered HTTP {answer.status_code}", calls)
                problem = f"HTTP {answer.status_code}"
                wait = retry_after_seconds(answer.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise CallFailed(f"{problem} after {calls} attempt(s)", calls)
            if wait is None:
                wait = min(_MAX_BACKOFF_SECONDS, self.backoff * 2**attempt)
                wait *= random.uniform(0.5, 1.0)
            if time.monotonic() + wait >= deadline:
                raise CallFailed(f"{problem}; retrying would pass the job's time limit", calls)
            logger.info("judge call %s; retrying in %.2fs", problem, wait)
            time.sleep(wait)
            attempt += 1
