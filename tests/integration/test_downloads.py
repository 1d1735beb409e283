"""`shared.web.download` over a real socket: a whole file ends properly, a failure before the first
chunk is an ordinary error answer, a failure mid-way cuts the transfer so that the client never
takes a truncated file for a whole one, and the chunks are closed however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from shared.web import download, error_middleware, serving
from tests.support import free_port


async def _chunks(closed: asyncio.Event, fail_after: int | None, endless: bool) -> AsyncGenerator[str, None]:
    """Three chunks (or endless ones), failing at chunk `fail_after`; `closed` is set once they are
    closed (what they hold, a connection, gone back)."""
    try:
        for n in itertools.count() if endless else range(3):
            if fail_after is not None and n >= fail_after:
                raise ConnectionRefusedError("the database went away")
            yield f"line {n}\r\n" * 1000
    finally:
        closed.set()


def _app(closed: asyncio.Event) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        fail = request.query.get("fail_after")
        chunks = _chunks(closed, int(fail) if fail is not None else None, endless="endless" in request.query)
        return await download(request, chunks, content_type="text/csv", filename="f.csv", prefix="\ufeff")

    app = web.Application(middlewares=[error_middleware("test")])
    app.router.add_get("/f.csv", handler)
    return app


@pytest.fixture
async def closed() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def base_url(closed) -> AsyncIterator[str]:
    port = free_port()
    async with serving(_app(closed), "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"


async def test_a_whole_download_ends_properly(base_url):
    async with aiohttp.ClientSession() as http, http.get(base_url + "/f.csv") as response:
        assert response.status == 200
        assert response.headers["Content-Disposition"] == 'attachment; filename="f.csv"'
        body = (await response.read()).decode()
    assert body == "\ufeff" + "".join(f"line {n}\r\n" * 1000 for n in range(3))


async def test_a_failure_before_the_first_chunk_is_an_error_answer(base_url):
    async with aiohttp.ClientSession() as http, http.get(base_url + "/f.csv?fail_after=0") as response:
        assert response.status == 503  # a passing failure: try again
        assert (await response.json())["error"]["code"] == "unavailable"


async def test_a_failure_mid_way_cuts_the_transfer(base_url):
    timeout = aiohttp.ClientTimeout(total=10)  # (a transfer left hanging fails too)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(base_url + "/f.csv?fail_after=2") as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_client_gone_mid_way_closes_the_chunks(base_url, closed):
    async with aiohttp.ClientSession() as http:
        response = await http.get(base_url + "/f.csv?endless=1")
        assert response.status == 200
        await response.content.readexactly(10_000)
        response.close()  # the browser's download cancelled
    await asyncio.wait_for(closed.wait(), 10)


async def test_the_chunks_of_a_whole_or_failed_download_are_closed(base_url, closed):
    async with aiohttp.ClientSession() as http:
        for query in ("", "?fail_after=0", "?fail_after=2"):
            closed.clear()
            async with http.get(base_url + "/f.csv" + query) as response:
                with contextlib.suppress(aiohttp.ClientPayloadError):
                    await response.read()
            await asyncio.wait_for(closed.wait(), 10)
