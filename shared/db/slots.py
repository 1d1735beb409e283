"""Concurrency slots: `max_concurrent` held across every dispatcher replica.

Each campaign has `max_concurrent` slot rows; a send leases one for its provider request (a call,
until it ends). A lease that outlives a crashed process expires and the slot is taken again.
"""

from __future__ import annotations

import asyncpg

from shared.db.connection import Executor

#: NOTIFY channel on which a freed slot wakes waiting dispatchers.
CHANNEL = "slot_free"

_ACQUIRE = """
UPDATE concurrency_slots s SET delivery_id = $2, lease_until = now() + make_interval(secs => $3)
WHERE (s.campaign_id, s.slot) IN (
    SELECT campaign_id, slot FROM concurrency_slots
    WHERE campaign_id = $1 AND (delivery_id IS NULL OR lease_until < now() OR delivery_id = $2)
    ORDER BY (delivery_id = $2) DESC NULLS LAST, slot
    LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING s.slot
"""
# Free the slot and, when one was freed, wake the waiting dispatchers (in one statement: the
# notification goes out with the commit).
_RELEASE = """
WITH freed AS (
    UPDATE concurrency_slots SET delivery_id = NULL, lease_until = NULL
    WHERE campaign_id = $1 AND delivery_id = $2
    RETURNING 1
)
SELECT pg_notify($3, $1) FROM freed LIMIT 1
"""
_EXTEND = """
UPDATE concurrency_slots SET lease_until = now() + make_interval(secs => $3)
WHERE campaign_id = $1 AND delivery_id = $2
"""
_IN_USE = """
SELECT count(*) FROM concurrency_slots
WHERE campaign_id = $1 AND delivery_id IS NOT NULL AND lease_until >= now()
"""


async def try_acquire(pool: asyncpg.Pool, campaign_id: str, delivery_id: str, lease_s: float) -> bool:
    """Lease a free slot of the campaign for the delivery; False when all are taken."""
    return await pool.fetchval(_ACQUIRE, campaign_id, delivery_id, lease_s) is not None


async def release(conn: Executor, campaign_id: str, delivery_id: str) -> None:
    """Free the delivery's slot and wake the dispatchers waiting for one (inside the caller's
    transaction when given a connection in one)."""
    await conn.execute(_RELEASE, campaign_id, delivery_id, CHANNEL)


async def extend(pool: asyncpg.Pool, campaign_id: str, delivery_id: str, lease_s: float) -> None:
    """Keep a long send's lease alive."""
    await pool.execute(_EXTEND, campaign_id, delivery_id, lease_s)


async def in_use(pool: asyncpg.Pool, campaign_id: str) -> int:
    """How many of a campaign's slots are leased now."""
    return int(await pool.fetchval(_IN_USE, campaign_id))
