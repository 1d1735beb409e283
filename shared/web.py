"""aiohttp pieces shared by the API and the tracker: JSON errors, request ids, access metrics."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter, Histogram

from shared.db.pool import TRANSIENT, UNSTORABLE
from shared.errors import AppError

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_REQUESTS = Counter("campaigns_http_requests_total", "HTTP requests answered", ["service", "route", "status"])
HTTP_LATENCY = Histogram("campaigns_http_request_seconds", "HTTP request latency", ["service", "route"])

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}

#: Retry-After (seconds) on a 503 answered while the database is away.
RETRY_AFTER_S = 1


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, web.TCPSite]:
    """Serve `app` on host:port; its runner (call `cleanup()` to stop) and site. When the port
    cannot be bound, the app is cleaned up before the error is raised: the background work its
    cleanup contexts started does not run on (holding a database connection, say)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[web.AppRunner]:
    """Serve `app` on host:port while in the block (see `start`); cleaned up on the way out."""
    runner, _ = await start(app, host, port)
    try:
        yield runner
    finally:
        await runner.cleanup()


def error_body(
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one error shape: `{"error": {"code", "message", "details": [{"field", "reason"}]}}`."""
    return {"error": {"code": code, "message": message, "details": details or [], **(extra or {})}}


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response (datetimes and decimals as strings)."""
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


async def download(
    request: web.Request, chunks: AsyncGenerator[str, None], *, content_type: str, filename: str, prefix: str = ""
) -> web.StreamResponse:
    """Stream `chunks` (UTF-8) as a file to save. The first chunk is awaited before anything is
    sent, so that a failure to start is an ordinary error answer; a failure after that cuts the
    connection (the client sees the transfer end without its last chunk) rather than ending a file
    that looks whole. `chunks` is closed however the download ends (what it holds goes back)."""
    async with contextlib.aclosing(chunks):
        first = prefix + await anext(chunks, "")
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{content_type}; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            }
        )
        response.enable_compression()
        await response.prepare(request)
        try:
            await response.write(first.encode())
            async for chunk in chunks:
                await response.write(chunk.encode())
        except ConnectionResetError:
            raise  # the client went away
        except Exception as exc:
            log.warning("http.download_cut", filename=filename, error=repr(exc))
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


#: Request ids of this process: a random prefix and a counter (unique, and no system call each).
_PROCESS = uuid.uuid4().hex[:16]
_request_ids = (f"{_PROCESS}{n:016x}" for n in itertools.count(1))

#: The status recorded for a request whose client went away before the answer (nginx's 499).
CLIENT_GONE = 499


def error_middleware(service: str) -> Any:
    """Middleware: AppError and aiohttp's HTTP errors become JSON errors, a lost database a 503
    with Retry-After; the rest a logged 500."""
    # each route's (and status's) metric children, looked up once: `labels()` takes a lock and
    # builds a key at every call, a cost a webhook receiver pays thousands of times a second
    counted: dict[tuple[str, int], Any] = {}
    timed: dict[str, Any] = {}

    def account(route: str, status: int, seconds: float) -> None:
        counter = counted.get((route, status))
        if counter is None:
            counter = counted[(route, status)] = HTTP_REQUESTS.labels(service, route, str(status))
        latency = timed.get(route)
        if latency is None:
            latency = timed[route] = HTTP_LATENCY.labels(service, route)
        counter.inc()
        latency.observe(seconds)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id") or next(_request_ids)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        started = time.perf_counter()
        status = 500
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                response = await handler(request)
                status = response.status
            except AppError as exc:
                status = exc.status
                response = json_response(error_body(exc.code, exc.message, exc.details, exc.extra), exc.status)
                if exc.retry_after is not None:
                    response.headers["Retry-After"] = str(exc.retry_after)
            except web.HTTPException as exc:
                status = exc.status
                if status < 400:
                    raise
                details = None
                if status == 413:  # aiohttp's text names the limit: "Maximum request body size N exceeded."
                    details = [{"field": "body", "reason": exc.text or exc.reason}]
                response = json_response(error_body(_HTTP_CODES.get(status, "http_error"), exc.reason, details), status)
            except ConnectionResetError as exc:  # the client went away mid-request (an upload cut off)
                status = CLIENT_GONE
                log.warning("http.client_gone", path=request.path, method=request.method, reason=str(exc))
                response = web.Response(status=CLIENT_GONE)  # nobody to read it
            except UNSTORABLE as exc:  # e.g. a NUL in an id in the path or the query
                status = 422
                response = json_response(
                    error_body(
                        "validation_error",
                        "the request is not valid",
                        [{"field": "request", "reason": f"holds a character that cannot be stored: {exc}"}],
                    ),
                    status,
                )
            except TRANSIENT as exc:  # the database away, a deadlock, a timeout: the same request again will do
                status = 503
                log.warning("http.database_unavailable", path=request.path, method=request.method, error=repr(exc))
                response = json_response(
                    error_body("unavailable", "the database is unavailable for a moment: try again"), status
                )
                response.headers["Retry-After"] = str(RETRY_AFTER_S)
            except Exception:
                log.exception("http.unhandled", path=request.path)
                response = json_response(error_body("internal_error", "internal error"), 500)
            finally:
                account(route, status, time.perf_counter() - started)
        finally:  # (what structlog's bound_contextvars does, without its context manager's cost)
            structlog.contextvars.reset_contextvars(**bound)
        response.headers["X-Request-Id"] = request_id
        return response

    return middleware
