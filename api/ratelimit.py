"""Per-token rate limits: fixed windows counted in Django's cache.

Two buckets per token, so one kind of traffic cannot starve the other:
- "api": every request except file downloads, PREFLAB_API_RATE_LIMIT (default 600/minute);
- "download": snapshot file downloads, PREFLAB_API_DOWNLOAD_RATE_LIMIT (default 120/minute).

A download counts once when it starts, whatever its size; a resumed download (a Range
request) is a new request. Bytes are never counted and a transfer in progress is never cut.

The counters live in the default cache. With several server processes, configure a shared
cache (Redis, Memcached or the database cache) so the limit holds across processes; with the
local-memory default each process counts on its own.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_SETTINGS = {"api": "PREFLAB_API_RATE_LIMIT", "download": "PREFLAB_API_DOWNLOAD_RATE_LIMIT"}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/minute' -> (600, 60); '10/5s' -> (10, 5)."""
    try:
        count_text, period_text = rate.strip().split("/", 1)
        count = int(count_text)
        digits = "".join(ch for ch in period_text if ch.isdigit())
        unit = period_text[len(digits) :].strip().lower()
        period = (int(digits) if digits else 1) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"Invalid rate {rate!r}; write it like '600/minute'.") from None
    if count < 1 or period < 1:
        raise ValueError(f"Invalid rate {rate!r}; both numbers must be positive.")
    return count, period


def rate_for(bucket: str) -> tuple[int, int]:
    return parse_rate(str(getattr(settings, _SETTINGS[bucket])))


def check_rate(bucket: str, ident: str) -> int | None:
    """Count one request; return None if allowed, else the seconds until the window resets."""
    limit, period = rate_for(bucket)
    now = time.time()
    window = int(now // period)
    key = f"preflab:api-rate:{bucket}:{ident}:{period}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr: this is the window's first hit
        cache.set(key, 1, timeout=period + 1)
        count = 1
    if count <= limit:
        return None
    return max(1, math.ceil((window + 1) * period - now))
