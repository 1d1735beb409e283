"""The sandbox's own HTTP/1.1 client for the status callbacks it sends: form POSTs over keep-alive
connections, a small pool per host. A stand-in sends two callbacks per message, and a general
client's per-request work (aiohttp's: timers, cookies, URL objects, multipart-capable payloads)
would make the stand-in, not the product, the cost a benchmark measures. Plain `http` only: an
`https` callback URL goes through aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import aiohttp

#: Seconds a callback may take (connect, send, answer), as Twilio's own default.
TIMEOUT_S = 15.0


class CallbackError(Exception):
    """The callback could not be delivered (connection refused or cut, no answer in time)."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class CallbackClient:
    """POSTs `application/x-www-form-urlencoded` bodies; returns the answer's status code."""

    def __init__(self, max_per_host: int = 256):
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._max = max_per_host
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close every connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url`; the status code, or CallbackError."""
        parts = urlsplit(url)
        if parts.scheme != "http":
            return await self._post_aiohttp(url, body, headers)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        key = (host, port)
        slots = self._open.get(key)
        if slots is None:
            slots = self._open[key] = asyncio.Semaphore(self._max)
        async with slots:  # at most `max_per_host` connections, each kept for the next callback
            return await self._send(url, key, request)

    async def _send(self, url: str, key: tuple[str, int], request: bytes) -> int:
        host, port = key
        for fresh in (False, True):  # a kept connection the server closed meanwhile: once more on a new one
            connection = None if fresh else self._take(key)
            try:
                if connection is None:
                    connection = _Connection(*await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S))
                async with asyncio.timeout(TIMEOUT_S):
                    connection.writer.write(request)
                    status, keep = await _read_answer(connection.reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                if connection is not None:
                    connection.close()
                if fresh:
                    raise CallbackError(f"{url}: {exc!r}") from exc
                continue
            if keep:
                self._idle.setdefault(key, []).append(connection)
            else:
                connection.close()
            return status
        raise CallbackError(url)  # not reached: the second try returns or raises

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        connections = self._idle.get(key)
        return connections.pop() if connections else None

    async def _post_aiohttp(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallbackError(f"{url}: {exc!r}") from exc


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 answer; (status, whether the connection may be used again)."""
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    status = int(status_line.split(b" ", 2)[1])
    length, chunked, keep = 0, False, True
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = value != b"close"
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    elif length:
        await reader.readexactly(length)
    return status, keep
