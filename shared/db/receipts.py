"""Deliveries whose receipt is overdue: accepted by the provider (`sent`) long enough ago that its
final status callback should have come, and not asked about too often yet."""

from __future__ import annotations

import asyncpg

from shared.db.connection import Connection, Executor

# The n-th check waits after_s * 2**n after the previous one (or after the send), so a carrier
# that never reports costs `max_checks` lookups, spread out, and no more.
_OVERDUE = """
SELECT d.id, d.provider_id, d.state, d.provider_status, d.sent_at, d.delivered_at, d.status_checks
FROM deliveries d
WHERE d.state = 'sent' AND d.channel = $1 AND d.provider_id IS NOT NULL AND d.status_checks < $3
  AND COALESCE(d.status_checked_at, d.sent_at) < now() - make_interval(secs => $2 * power(2, d.status_checks))
ORDER BY d.sent_at
LIMIT $4
"""
# Taken for one lookup: counted now, so that another poller skips it until its next turn (and a
# poller that dies mid-lookup leaves it for then).
_TAKE = """
UPDATE deliveries SET status_checks = status_checks + 1, status_checked_at = now()
WHERE id = $1 AND state = 'sent' AND status_checks = $2
RETURNING id
"""
_LOCK = """
SELECT id, state, provider_id, provider_status, sent_at, delivered_at FROM deliveries WHERE id = $1 FOR UPDATE
"""


async def overdue(
    conn: Executor, channel: str, after_s: float, max_checks: int, limit: int = 100
) -> list[asyncpg.Record]:
    """Overdue receipts of `channel` (not locked: `take` each before asking the provider)."""
    return list(await conn.fetch(_OVERDUE, channel, after_s, max_checks, limit))


async def take(conn: Executor, delivery_id: str, checks: int) -> bool:
    """Count one lookup of an overdue receipt; False when another poller took it first."""
    return await conn.fetchval(_TAKE, delivery_id, checks) is not None


async def lock(conn: Connection, delivery_id: str) -> asyncpg.Record | None:
    """The delivery as it is now, row-locked (inside a transaction), to apply what was found."""
    return await conn.fetchrow(_LOCK, delivery_id)
