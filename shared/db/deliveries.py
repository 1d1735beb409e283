"""Deliveries: bulk planning (COPY), release of due rows (SKIP LOCKED), and their state changes.

A delivery only moves forward: planned → queued → sending → sent → delivered, or to failed,
cancelled or skipped; a retry sends it back to planned with a later `send_at`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

#: Columns written when a run is planned, in COPY order.
PLAN_COLUMNS = (
    "id", "run_id", "campaign_id", "account_id", "contact_id", "channel", "to_address", "state",
    "send_at", "plan_reason", "error",
)

_RECIPIENTS = """
SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.company, c.timezone, c.metadata,
       c.opted_out_sms, c.opted_out_email, c.opted_out_voice
FROM contacts c
WHERE c.account_id = $1 AND c.id IN (
    SELECT contact_id FROM campaign_recipients WHERE campaign_id = $2
    UNION
    SELECT m.contact_id FROM group_members m JOIN contact_groups g ON g.id = m.group_id
    WHERE g.account_id = $1 AND g.id = ANY($3::text[])
)
"""
_INSERT_RUN = """
INSERT INTO runs (id, campaign_id, account_id, seq, status, occurs_at)
VALUES ($1, $2, $3, $4, 'planned', $5) ON CONFLICT (campaign_id, seq) DO NOTHING RETURNING id
"""
_SLOTS = """
INSERT INTO concurrency_slots (campaign_id, slot)
SELECT $1, s FROM generate_series(0, $2 - 1) AS s ON CONFLICT DO NOTHING
"""
_RELEASE = """
WITH due AS (
    SELECT d.id FROM deliveries d
    WHERE d.state = 'planned' AND d.send_at <= $1
      AND EXISTS (SELECT 1 FROM campaigns c
                  WHERE c.id = d.campaign_id AND c.status IN ('scheduled', 'running'))
    ORDER BY d.send_at
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET state = 'queued', queued_at = $1, updated_at = now()
FROM due, campaigns c WHERE d.id = due.id AND c.id = d.campaign_id
RETURNING d.id, d.campaign_id, d.account_id, d.channel, d.send_at, d.plan_reason, c.sending_window
"""
_DEFER = """
UPDATE deliveries d SET state = 'planned', queued_at = NULL, send_at = u.at, updated_at = now(),
    plan_reason = COALESCE(d.plan_reason, '{}'::jsonb)
        || jsonb_build_object('deferred_from', d.send_at, 'deferred_because', 'released late, outside its hours')
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
WHERE d.id = u.id
"""
_MARK_RUNNING = """
UPDATE campaigns SET status = 'running', updated_at = now()
WHERE id = ANY($1::text[]) AND status = 'scheduled'
"""
_COMPLETE = """
WITH done AS (
    UPDATE campaigns c SET status = 'completed', completed_at = now(), updated_at = now()
    WHERE c.status = 'running' AND NOT EXISTS (
        SELECT 1 FROM deliveries d
        WHERE d.campaign_id = c.id AND d.state IN ('planned', 'queued', 'sending'))
    RETURNING c.id, c.account_id
), runs_done AS (
    UPDATE runs r SET status = 'completed', completed_at = now()
    FROM done WHERE r.campaign_id = done.id AND r.status <> 'completed'
    RETURNING r.id, r.campaign_id
)
SELECT done.id AS campaign_id, done.account_id, runs_done.id AS run_id
FROM done LEFT JOIN runs_done ON runs_done.campaign_id = done.id
"""
_CANCEL = """
UPDATE deliveries SET state = 'cancelled', error = 'campaign cancelled', updated_at = now()
WHERE campaign_id = $1 AND state IN ('planned', 'queued')
"""


async def recipients(
    conn: asyncpg.Connection, account_id: str, campaign_id: str, group_ids: Sequence[str], batch: int = 5000
) -> AsyncIterator[list[asyncpg.Record]]:
    """The campaign's contacts (inline and from its groups), streamed in batches; needs a transaction."""
    chunk: list[asyncpg.Record] = []
    async for row in conn.cursor(_RECIPIENTS, account_id, campaign_id, list(group_ids), prefetch=batch):
        chunk.append(row)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def insert_run(conn: asyncpg.Connection, run_id: str, campaign_id: str, account_id: str, seq: int, occurs_at: datetime | None) -> bool:
    """Create run number `seq`; False if it already exists."""
    return await conn.fetchval(_INSERT_RUN, run_id, campaign_id, account_id, seq, occurs_at) is not None


async def ensure_slots(conn: asyncpg.Connection, campaign_id: str, max_concurrent: int) -> None:
    """One concurrency slot per `max_concurrent`."""
    await conn.execute(_SLOTS, campaign_id, max_concurrent)


async def copy_planned(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> None:
    """Bulk-write planned deliveries (tuples in PLAN_COLUMNS order)."""
    await conn.copy_records_to_table("deliveries", records=records, columns=PLAN_COLUMNS)


async def release_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Mark up to `limit` due deliveries of live campaigns queued, earliest first; returns them."""
    rows = await conn.fetch(_RELEASE, now, limit)
    if rows:
        await conn.execute(_MARK_RUNNING, list({r["campaign_id"] for r in rows}))
    return rows


async def defer(conn: asyncpg.Connection, moves: Sequence[tuple[str, datetime]]) -> None:
    """Send released deliveries back to planned, each at its new instant."""
    if moves:
        await conn.execute(_DEFER, [m[0] for m in moves], [m[1] for m in moves])


async def complete_finished(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Complete every running campaign with no open delivery; returns (campaign_id, account_id, run_id)."""
    return await conn.fetch(_COMPLETE)


async def cancel_pending(conn: asyncpg.Connection, campaign_id: str) -> int:
    """End every delivery of a campaign not yet handed to a provider; how many."""
    result = await conn.execute(_CANCEL, campaign_id)
    return int(result.split()[-1])
