"""Webhook endpoints, the events owed to them and the attempts made (migration 0020: triggers
record the events in the transaction of the change they report)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from shared.db.connection import Connection, Executor

_INSERT = """
INSERT INTO webhook_endpoints (id, account_id, url, events, secret) VALUES ($1, $2, $3, $4, $5)
RETURNING id, account_id, url, events, enabled, disabled_reason, failing_since, created_at, updated_at
"""
_GET = """
SELECT id, account_id, url, events, enabled, disabled_reason, failing_since, created_at, updated_at
FROM webhook_endpoints WHERE account_id = $1 AND id = $2
"""
_PAGE = """
SELECT id, account_id, url, events, enabled, disabled_reason, failing_since, created_at, updated_at
FROM webhook_endpoints
WHERE account_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
ORDER BY created_at DESC, id DESC LIMIT $4
"""
_UPDATE = """
UPDATE webhook_endpoints SET
    url = COALESCE($3, url), events = COALESCE($4, events), enabled = COALESCE($5, enabled),
    disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
    failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
    updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING id, account_id, url, events, enabled, disabled_reason, failing_since, created_at, updated_at
"""
_DELETE = "DELETE FROM webhook_endpoints WHERE account_id = $1 AND id = $2"
_ATTEMPTS = """
SELECT id, event_id, type, status_code, error, duration_ms, at FROM webhook_attempts
WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC LIMIT $3
"""
_EMIT = "SELECT emit_webhook_events($1::jsonb)"
#: Due deliveries, leased for `$2` seconds (a sender that dies with them leaves them due again).
_CLAIM = """
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
FROM due, webhook_endpoints w
WHERE d.id = due.id AND w.id = d.endpoint_id
RETURNING d.id, d.event_id, d.endpoint_id, d.type, d.payload, d.attempts, d.created_at, w.url, w.secret, w.enabled
"""
_DELIVERED = "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1 WHERE id = $1"
_FAILED = """
UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2,
    state = CASE WHEN $3 THEN 'failed' ELSE 'pending' END
WHERE id = $1
"""
_ATTEMPT = """
INSERT INTO webhook_attempts (endpoint_id, event_id, type, status_code, error, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_ENDPOINT_OK = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL"
#: A failure: the endpoint failing since its first failure, and disabled when that is before `$2`.
_ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, now()),
    enabled = CASE WHEN failing_since < $2 THEN false ELSE enabled END,
    disabled_reason = CASE WHEN failing_since < $2 THEN $3 ELSE disabled_reason END,
    updated_at = CASE WHEN failing_since < $2 THEN now() ELSE updated_at END
WHERE id = $1
RETURNING enabled, failing_since
"""
_DROP_DISABLED = "UPDATE webhook_deliveries SET state = 'failed' WHERE id = $1"
_PURGE_ATTEMPTS = "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts WHERE at < $1 LIMIT 5000)"
_PURGE_ENDED = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1 LIMIT 5000
)
"""


async def insert_endpoint(
    conn: Executor, endpoint_id: str, account_id: str, url: str, events: list[str], secret: str
) -> asyncpg.Record:
    """A new endpoint (enabled)."""
    row = await conn.fetchrow(_INSERT, endpoint_id, account_id, url, events, secret)
    assert row is not None
    return row


async def get_endpoint(conn: Executor, account_id: str, endpoint_id: str) -> asyncpg.Record | None:
    """One of the account's endpoints (without its secret)."""
    return await conn.fetchrow(_GET, account_id, endpoint_id)


async def endpoints_page(conn: Executor, account_id: str, after: Any, limit: int) -> list[asyncpg.Record]:
    """The account's endpoints, newest first, after the cursor `(created_at, id)`."""
    created, last_id = after if after else (None, None)
    return list(await conn.fetch(_PAGE, account_id, created, last_id, limit))


async def update_endpoint(
    conn: Executor, account_id: str, endpoint_id: str, url: str | None, events: list[str] | None, enabled: bool | None
) -> asyncpg.Record | None:
    """Change an endpoint's URL, events or `enabled` (None: unchanged); enabling it forgets why it
    was disabled."""
    return await conn.fetchrow(_UPDATE, account_id, endpoint_id, url, events, enabled)


async def delete_endpoint(conn: Executor, account_id: str, endpoint_id: str) -> bool:
    """Delete an endpoint and what is owed to it; whether it existed."""
    return await conn.execute(_DELETE, account_id, endpoint_id) != "DELETE 0"


async def attempts(conn: Executor, endpoint_id: str, before: int | None, limit: int) -> list[asyncpg.Record]:
    """An endpoint's attempts, newest first, before attempt id `before`."""
    return list(await conn.fetch(_ATTEMPTS, endpoint_id, before, limit))


async def emit(conn: Connection, events: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Record events `(account_id, type, data)` for every endpoint that wants them, inside the
    caller's transaction (the triggers of migration 0020 do this for the changes they see)."""
    if events:
        await conn.execute(_EMIT, [{"account_id": a, "type": t, "data": d} for a, t, d in events])


async def claim(conn: Executor, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Up to `limit` deliveries due now, leased for `lease_s` seconds."""
    return list(await conn.fetch(_CLAIM, limit, lease_s))


async def delivered(conn: Connection, delivery: asyncpg.Record, status: int, duration_ms: int) -> None:
    """A delivery the endpoint took (2xx): done, and the endpoint no longer failing."""
    await conn.execute(_DELIVERED, delivery["id"])
    await conn.execute(
        _ATTEMPT, delivery["endpoint_id"], delivery["event_id"], delivery["type"], status, None, duration_ms
    )
    await conn.execute(_ENDPOINT_OK, delivery["endpoint_id"])


async def failed(
    conn: Connection,
    delivery: asyncpg.Record,
    status: int | None,
    error: str,
    duration_ms: int,
    next_at: datetime,
    give_up: bool,
    disable_before: datetime,
    disabled_reason: str,
) -> bool:
    """A failed attempt: tried again at `next_at`, or failed for good when `give_up`; the endpoint
    failing since its first failure, disabled (saying `disabled_reason`) when that was before
    `disable_before`. Whether the endpoint is still enabled."""
    await conn.execute(_FAILED, delivery["id"], next_at, give_up)
    await conn.execute(
        _ATTEMPT, delivery["endpoint_id"], delivery["event_id"], delivery["type"], status, error, duration_ms
    )
    row = await conn.fetchrow(_ENDPOINT_FAILED, delivery["endpoint_id"], disable_before, disabled_reason)
    return bool(row and row["enabled"])


async def drop(conn: Executor, delivery_id: int) -> None:
    """A delivery owed to an endpoint since disabled: failed, not sent."""
    await conn.execute(_DROP_DISABLED, delivery_id)


async def purge(conn: Executor, before: datetime) -> int:
    """Delete attempts and ended deliveries older than `before` (a batch of each); how many."""
    a = await conn.execute(_PURGE_ATTEMPTS, before)
    b = await conn.execute(_PURGE_ENDED, before)
    return int(a.split()[-1]) + int(b.split()[-1])
