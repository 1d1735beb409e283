"""`Idempotency-Key` on creating POSTs, as Stripe does: a retry gets the first answer back.

The key is reserved in its own committed statement before the handler runs, so of two concurrent
requests only one runs; the answer (below 500) is stored after; a 5xx or an exception frees the key.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import re
import time
from typing import Any

import structlog
from aiohttp import web

from shared.db import idempotency as db
from shared.errors import AppError, Conflict, Invalid
from shared.web import Handler, error_body, json_response

log = structlog.get_logger()

#: The request header carrying the caller's key.
HEADER = "Idempotency-Key"
#: The answer header set on a replayed answer.
REPLAYED = "Idempotent-Replayed"
#: Longest key accepted (longer is a 422).
MAX_KEY_LENGTH = 255
#: Answer headers stored and replayed besides the body.
KEPT_HEADERS = ("Content-Type", "Location")
#: Seconds between two purges of expired keys (done by the request that comes along).
PURGE_EVERY = 60.0

#: POSTs that ignore the header. Campaign actions are idempotent by state (a repeated launch is a
#: 409 saying why). The CSV import streams its body, which is not read twice to be hashed; it
#: upserts on phone/email, so a retried import updates the same contacts instead of duplicating.
#: A new API key is shown once and kept only as its hash: its answer is never stored to replay.
EXEMPT = re.compile(r"/contacts/import|/campaigns/[^/]+/(?:launch|pause|resume|cancel)|/api-keys")


class Verdict(enum.Enum):
    """What to do with a request whose key is already held."""

    REPLAY = "replay"  #: same request, answered: send the stored answer
    IN_PROGRESS = "in_progress"  #: same request, still running: 409
    MISMATCH = "mismatch"  #: another method, path or body: 409


def judge(stored: db.Stored, method: str, path: str, body_hash: bytes) -> Verdict:
    """The verdict for a request meeting a key that already holds `stored`."""
    if (stored.method, stored.path, stored.body_hash) != (method, path, body_hash):
        return Verdict.MISMATCH
    return Verdict.IN_PROGRESS if stored.status is None else Verdict.REPLAY


def honours(method: str, path: str) -> bool:
    """Whether requests of `method` to `path` (a request's, or a route's `/campaigns/{id}/launch`)
    count an `Idempotency-Key`: the creating POSTs, those of EXEMPT aside."""
    return method == "POST" and EXEMPT.fullmatch(path) is None


def applies(request: web.Request) -> bool:
    """Whether the request's `Idempotency-Key` counts (a matched, authenticated, creating POST)."""
    return (
        honours(request.method, request.path)
        and HEADER in request.headers
        and "account" in request
        and request.match_info.http_exception is None
    )


def idempotency_middleware() -> Any:
    """Replay the first answer to a repeated key; 409 for another request or one still running."""
    last_purge = -PURGE_EVERY

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal last_purge
        if not applies(request):
            return await handler(request)
        key = request.headers[HEADER]
        if not 0 < len(key) <= MAX_KEY_LENGTH:
            raise Invalid(
                f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters long",
                details=[{"field": HEADER, "reason": f"{len(key)} characters"}],
            )
        if not _is_text(key):
            raise Invalid(
                f"the {HEADER} header must be UTF-8 text",
                details=[{"field": HEADER, "reason": "holds bytes that are not UTF-8 text, or a NUL"}],
            )
        pool = request.app["pool"]
        if time.monotonic() - last_purge >= PURGE_EVERY:
            last_purge = time.monotonic()
            if purged := await db.purge_expired(pool):
                log.info("idempotency.purged", count=purged)
        account_id = request["account"]["id"]
        path = request.path_qs
        body_hash = hashlib.sha256(_canonical(await request.read())).digest()
        for _ in range(3):  # the key may be freed or expire between the two statements
            token = await db.reserve(pool, account_id, key, request.method, path, body_hash)
            if token is not None:
                return await _run_once(request, handler, pool, account_id, key, token)
            stored = await db.find(pool, account_id, key)
            if stored is not None:
                return _answer(stored, judge(stored, request.method, path, body_hash))
        raise Conflict("a request with this key is in progress")

    return middleware


async def _run_once(
    request: web.Request, handler: Handler, pool: Any, account_id: str, key: str, token: Any
) -> web.StreamResponse:
    """Run the handler for a reserved key; store its answer, or free the key on a 5xx or a crash."""
    try:
        response = await handler(request)
    except AppError as exc:
        if exc.status >= 500:
            await asyncio.shield(db.release(pool, account_id, key, token))
            raise
        error = error_body(exc.code, exc.message, exc.details, exc.extra)
        response = json_response(error, exc.status)
    except BaseException:
        await asyncio.shield(db.release(pool, account_id, key, token))
        raise
    body = response.body if isinstance(response, web.Response) else None
    if response.status >= 500 or not isinstance(body, bytes):  # a stream is not kept
        await db.release(pool, account_id, key, token)
        return response
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    try:
        await db.complete(pool, account_id, key, token, response.status, headers, body)
    except Exception:  # the answer stands; the key frees itself once abandoned
        log.exception("idempotency.store_failed", key=key)
    return response


def _answer(stored: db.Stored, verdict: Verdict) -> web.Response:
    """The stored answer replayed, or the 409 the verdict calls for."""
    if verdict is Verdict.MISMATCH:
        raise Conflict(
            f"this {HEADER} was already used for a different request (first: {stored.method}"
            f" {stored.path}, with its own body); use a new key for a new request",
            details=[{"field": HEADER, "reason": "used for a different request"}],
        )
    if verdict is Verdict.IN_PROGRESS:
        raise Conflict(
            "a request with this key is in progress; retry once it has finished",
            details=[{"field": HEADER, "reason": "in progress"}],
        )
    assert stored.status is not None
    headers = {**stored.headers, REPLAYED: "true"}
    return web.Response(status=stored.status, body=stored.body, headers=headers)


def _is_text(key: str) -> bool:
    """Whether a header's value can be stored: aiohttp decodes bytes that are not UTF-8 into lone
    surrogates, which PostgreSQL cannot hold (nor a NUL)."""
    try:
        key.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in key


def _canonical(body: bytes) -> bytes:
    """A JSON body as its parameters (key order and spacing aside, as Stripe compares them);
    any other body (one nested deeper than Python's decoder goes, too) as it is."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return body
