"""/healthz (alive), /readyz (its database and broker answer) and /metrics (Prometheus), for every
service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.web import start

Check = Callable[[], Awaitable[bool]]

#: Seconds one readiness check may take before it counts as failing.
CHECK_TIMEOUT_S = 2.0


def add_routes(app: web.Application, checks: dict[str, Check]) -> None:
    """Add `GET /healthz` (liveness: 200 while the process serves), `GET /readyz` (200 when every
    check passes, else 503 naming the failing ones: the database or the broker away) and `GET /metrics`."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results = {}
        for name, check in checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    results[name] = "ok" if await check() else "failing"
            except Exception as exc:
                results[name] = f"failing: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": results}, status=200 if ready else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def standard_checks(pool: object, connection: object) -> dict[str, Check]:
    """Checks that the database answers and the broker connection is open."""

    async def database() -> bool:
        return bool(await pool.fetchval("SELECT 1"))  # type: ignore[attr-defined]

    async def broker() -> bool:
        # a robust connection that lost the broker is not closed, only reconnecting: `connected`
        # says whether it holds a live connection now
        return not connection.is_closed and connection.connected.is_set()  # type: ignore[attr-defined]

    return {"database": database, "broker": broker}


async def serve_health(host: str, port: int, checks: dict[str, Check]) -> tuple[web.AppRunner, int]:
    """Serve only /healthz, /readyz and /metrics (scheduler, dispatchers); returns the runner and port."""
    app = web.Application()
    add_routes(app, checks)
    runner, site = await start(app, host, port)
    server = site._server
    # Typed as asyncio.AbstractServer, which declares no `sockets`; loop.create_server's Server has them.
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port  # type: ignore[attr-defined]
    return runner, bound
