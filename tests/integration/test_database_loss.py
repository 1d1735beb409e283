"""PostgreSQL dropping connections, met by the pieces every service stands on: the LISTEN that
wakes relays and slot waiters comes back by itself, an HTTP request that meets a lost database is a
503 with Retry-After (not a 500), and a background loop that dies stops its service loudly."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web

from shared.db.listen import Listener
from shared.db.pool import create_pool
from shared.runtime import background
from shared.web import RETRY_AFTER_S, error_middleware
from tests.conftest import Infra
from tests.support import TcpProxy, wait_until

_LISTENERS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"


async def test_a_listener_whose_connection_is_dropped_listens_again(db, infra: Infra):
    heard: list[str | None] = []
    channel = f"test_listen_{id(heard)}"
    async with create_pool(infra.database_url, 1, 2) as pool:
        listener = Listener(pool, channel, heard.append, retry_s=0.05)
        await listener.start()
        try:
            await db.execute("SELECT pg_notify($1, 'one')", channel)
            await wait_until(lambda: _async(heard == ["one"]), timeout=10, message="first notification")

            pids = [r["pid"] for r in await db.fetch(_LISTENERS)]
            await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
            # told that notifications may have been missed, then listening again on a new connection
            await wait_until(lambda: _async(None in heard), timeout=10, message="told of the loss")
            await wait_until(lambda: _async(listener.listening.is_set()), timeout=10, message="listening again")

            await db.execute("SELECT pg_notify($1, 'two')", channel)
            await wait_until(lambda: _async(heard[-1] == "two"), timeout=10, message="notification after the loss")
        finally:
            await listener.stop()
    assert heard == ["one", None, "two"]


async def _async(value: bool) -> bool:
    return value


@pytest.fixture
async def proxied_pool(infra: Infra):
    """A pool that reaches PostgreSQL only through a TcpProxy (closed to simulate the server gone)."""
    target = urlsplit(infra.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    url = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
    try:
        async with create_pool(url, 1, 2) as pool:
            yield pool, proxy
    finally:
        proxy.close()


async def test_a_request_that_meets_a_lost_database_is_a_503_with_retry_after(proxied_pool):
    pool, proxy = proxied_pool

    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({"one": await pool.fetchval("SELECT 1")})

    app = web.Application(middlewares=[error_middleware("test")])
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert (response.status, await response.json()) == (200, {"one": 1})
            proxy.close()  # the server gone: open connections dropped, new ones refused
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                body = await response.json()
                assert response.status == 503, body
                assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
                assert body["error"]["code"] == "unavailable"
    finally:
        await runner.cleanup()


async def test_a_background_loop_that_ends_stops_the_service_and_fails_it():
    stop = asyncio.Event()

    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(RuntimeError, match="ended before the service stopped") as raised:
        async with background(stop, broken()):
            await asyncio.wait_for(stop.wait(), 5)  # the loop's end is what sets it
    assert isinstance(raised.value.__cause__, ValueError)


async def test_background_loops_are_cancelled_when_the_service_stops():
    stop, started, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with background(stop, forever()):
        await asyncio.wait_for(started.wait(), 5)
        stop.set()
    assert cancelled.is_set()
