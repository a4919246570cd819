"""A minimal asyncio HTTP/1.1 client for the load benchmarks: one keep-alive connection and
one cookie jar per simulated browser, cheap enough to share two cores with the server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlencode


class HttpError(Exception):
    pass


class _EmptyResponse(Exception):
    """The server closed the connection without answering (an idle keep-alive timed out)."""


TRANSPORT_ERRORS = (HttpError, OSError, asyncio.IncompleteReadError, _EmptyResponse)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Client:
    """One simulated browser: a persistent connection, cookies, and the CSRF header."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.cookies: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = urlencode(form).encode() if form is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if form is not None:
            lines.append("Content-Type: application/x-www-form-urlencoded")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        # A reused keep-alive connection the server has closed meanwhile answers with nothing;
        # the request never reached the application, so it is safe to send it again once.
        for attempt in range(2):
            reused = self._writer is not None
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(raw)
                await self._writer.drain()
                response = await self._read_response(self._reader)
            except (ConnectionError, asyncio.IncompleteReadError, _EmptyResponse):
                await self.close()
                if reused and attempt == 0:
                    continue
                raise
            if (response.header("connection") or "").lower() == "close":
                await self.close()
            self._store_cookies(response)
            return response
        raise HttpError("unreachable")

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> Response:
        status_line = await reader.readline()
        if not status_line:
            raise _EmptyResponse
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError(f"bad status line {status_line!r}")
        status = int(parts[1])
        headers: list[tuple[str, str]] = []
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers.append((key.strip().lower(), value.strip()))
        lookup = dict(headers)
        if lookup.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        elif "content-length" in lookup:
            body = await reader.readexactly(int(lookup["content-length"]))
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()
        return Response(status, headers, body)

    def _store_cookies(self, response: Response) -> None:
        for key, value in response.headers:
            if key != "set-cookie":
                continue
            pair, _, attributes = value.partition(";")
            name, _, cookie_value = pair.strip().partition("=")
            expired = "max-age=0" in attributes.lower().replace(" ", "")
            if expired or cookie_value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie_value
