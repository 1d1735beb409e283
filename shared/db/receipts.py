"""Deliveries whose receipt is overdue: accepted by the provider (`sent`) long enough ago that its
final status callback should have come, and not asked about too often yet."""

from __future__ import annotations

import asyncpg

from shared.db.connection import Connection

# The n-th check waits after_s * 2**n after the previous one (or after the send), so a carrier
# that never reports costs `max_checks` lookups, spread out, and no more.
_OVERDUE = """
SELECT d.id, d.provider_id, d.state, d.provider_status, d.sent_at, d.delivered_at, d.status_checks
FROM deliveries d
WHERE d.state = 'sent' AND d.channel = $1 AND d.provider_id IS NOT NULL AND d.status_checks < $3
  AND COALESCE(d.status_checked_at, d.sent_at) < now() - make_interval(secs => $2 * power(2, d.status_checks))
ORDER BY d.sent_at
LIMIT $4
FOR UPDATE OF d SKIP LOCKED
"""
_CHECKED = "UPDATE deliveries SET status_checks = status_checks + 1, status_checked_at = now() WHERE id = $1"


async def overdue(
    conn: Connection, channel: str, after_s: float, max_checks: int, limit: int = 100
) -> list[asyncpg.Record]:
    """Overdue receipts of `channel`, row-locked (inside a transaction) so one poller asks."""
    return list(await conn.fetch(_OVERDUE, channel, after_s, max_checks, limit))


async def checked(conn: Connection, delivery_id: str) -> None:
    """Record one lookup (the next waits twice as long)."""
    await conn.execute(_CHECKED, delivery_id)
