"""Serve an immutable artifact with its hash as ETag, conditional GET and single byte ranges.

The file comes from the artifact store (core.artifacts) and is never read into memory: the
response streams it in BLOCK_SIZE blocks (one reused-size buffer per download). A range is
served by seeking the file and capping reads at the range's length; on S3 a seek is free and
reads are ranged GETs. With PREFLAB_S3_PRESIGNED_DOWNLOADS the S3 store answers with a 302 to
a presigned URL instead, so the bytes, ranges and resumes go between the client and S3.

sendfile(2): with PREFLAB_API_SENDFILE = True the file object exposes fileno(), and gunicorn
hands the file to the kernel (the declared Content-Length tells it how many bytes). It is off
by default because bench/api_download.py measured it at about half the throughput of
1 MiB user-space copies on loopback (1.8 vs 3.4 GiB/s for 1 GiB; nginx with sendfile did
2.2), while the copy costs only a 1 MiB buffer per download. Turn it on where CPU, not
bandwidth, is short.
"""

from __future__ import annotations

import base64
import re
from typing import BinaryIO

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase

from api.errors import ApiError
from core.artifacts import get_store

BLOCK_SIZE = 1 << 20
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileSlice:
    """A read-only view of bytes [start, start + length) of an open file."""

    def __init__(self, handle: BinaryIO, start: int, length: int) -> None:
        handle.seek(start)
        self._handle = handle
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        if size < 0 or size > self._remaining:
            size = self._remaining
        data = self._handle.read(size)
        self._remaining -= len(data)
        return data

    def tell(self) -> int:
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()


class SendfileSlice(FileSlice):
    """A FileSlice whose file descriptor gunicorn may pass to sendfile(2)."""

    def fileno(self) -> int:
        return self._handle.fileno()


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The (start, end inclusive) of a single byte range, or None to send the whole file.

    Raises ApiError 416 when the range cannot be satisfied. Several ranges, other units or bad
    syntax are ignored (RFC 9110 lets a server answer those with the full representation).
    """
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignore it
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range_not_satisfiable",
        f"The requested range is outside the file ({size} bytes).",
        details={"size": size},
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [part.strip() for part in header.split(",")]
    return any(candidate == "*" or candidate.removeprefix("W/") == etag for candidate in candidates)


def serve_file(
    request: HttpRequest, key: str, sha256: str, filename: str, content_type: str
) -> HttpResponseBase:
    """The artifact file under key, or 304, 206, 416, or (presigned S3) a 302 to the store."""
    etag = f'"{sha256}"'
    common = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        # Snapshots never change, but the answer needs a token: private caches only.
        "Cache-Control": "private, max-age=31536000, immutable",
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:",
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and _etag_matches(if_none_match, etag):
        not_modified = HttpResponse(status=304)
        for name, value in common.items():
            not_modified[name] = value
        return not_modified
    store = get_store()
    if settings.PREFLAB_S3_PRESIGNED_DOWNLOADS:
        location = store.download_url(
            key,
            filename=filename,
            content_type=content_type,
            expires=settings.PREFLAB_S3_PRESIGN_SECONDS,
        )
        if location is not None:
            redirect = HttpResponseRedirect(location)
            for name, value in common.items():
                redirect[name] = value
            redirect["Cache-Control"] = "private, no-store"  # the URL expires
            return redirect
    handle = store.open(key)
    try:
        size = handle.seek(0, 2)
        byte_range = None
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range.strip() == etag):
            byte_range = parse_range(range_header, size)
    except BaseException:
        handle.close()
        raise
    start, end = byte_range if byte_range else (0, size - 1)
    length = end - start + 1 if size else 0
    sendfile = getattr(settings, "PREFLAB_API_SENDFILE", False) and store.is_local
    slice_class = SendfileSlice if sendfile else FileSlice
    response = FileResponse(
        slice_class(handle, start, length),
        status=206 if byte_range else 200,
        content_type=content_type,
        as_attachment=True,
        filename=filename,
    )
    response.block_size = BLOCK_SIZE
    response["Content-Length"] = str(length)
    if byte_range:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    for name, value in common.items():
        response[name] = value
    return response
