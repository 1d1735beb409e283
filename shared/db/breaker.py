"""The circuit breaker's figures: each running campaign's window (its counts since launch or its
last resume) read off the counts kept as deliveries change, and its automatic pause."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.db.connection import Connection, Executor

#: Running campaigns whose breaker is not turned off, with their window's figures.
_WINDOWS = """
SELECT c.id, c.account_id, c.circuit_breaker,
       s.finished - COALESCE(b.base_finished, 0) AS finished,
       s.failed - COALESCE(b.base_failed, 0) AS failed,
       s.accepted - COALESCE(b.base_accepted, 0) AS accepted,
       s.undelivered - COALESCE(b.base_undelivered, 0) AS undelivered,
       COALESCE(b.opt_outs - b.base_opt_outs, 0) AS opt_outs
FROM campaigns c
CROSS JOIN LATERAL (
    SELECT COALESCE(sum(n.sent + n.delivered + n.undelivered + n.failed), 0)::int AS finished,
           COALESCE(sum(n.failed), 0)::int AS failed,
           COALESCE(sum(n.sent + n.delivered + n.undelivered), 0)::int AS accepted,
           COALESCE(sum(n.undelivered), 0)::int AS undelivered
    FROM delivery_counts n WHERE n.campaign_id = c.id
) AS s
LEFT JOIN campaign_breaker b ON b.campaign_id = c.id
WHERE c.status = 'running' AND (c.circuit_breaker ->> 'enabled') IS DISTINCT FROM 'false'
"""
#: Paused by the breaker, unless a person changed its state meanwhile.
_TRIP = """
UPDATE campaigns SET status = 'paused', resume_to = 'running', paused_reason = $2, updated_at = now()
WHERE id = $1 AND status = 'running'
RETURNING id, account_id
"""
#: A new window: the campaign's figures now become its base.
_NEW_WINDOW = """
INSERT INTO campaign_breaker AS b (campaign_id, base_finished, base_failed, base_accepted, base_undelivered)
SELECT $1,
       COALESCE(sum(n.sent + n.delivered + n.undelivered + n.failed), 0),
       COALESCE(sum(n.failed), 0),
       COALESCE(sum(n.sent + n.delivered + n.undelivered), 0),
       COALESCE(sum(n.undelivered), 0)
FROM delivery_counts n WHERE n.campaign_id = $1
ON CONFLICT (campaign_id) DO UPDATE SET
    base_finished = EXCLUDED.base_finished, base_failed = EXCLUDED.base_failed,
    base_accepted = EXCLUDED.base_accepted, base_undelivered = EXCLUDED.base_undelivered,
    base_opt_outs = b.opt_outs
"""
_CLEAR_REASON = "UPDATE campaigns SET paused_reason = NULL WHERE id = $1 AND paused_reason IS NOT NULL"
#: The campaign of the contact's latest message on a channel (what an unsubscribe answers).
_LATEST_CAMPAIGN = """
SELECT campaign_id FROM deliveries
WHERE contact_id = $1 AND channel = $2 AND sent_at IS NOT NULL
ORDER BY sent_at DESC LIMIT 1
"""
_OPT_OUT = """
INSERT INTO campaign_breaker AS b (campaign_id, opt_outs) VALUES ($1, 1)
ON CONFLICT (campaign_id) DO UPDATE SET opt_outs = b.opt_outs + 1
"""


async def windows(conn: Executor) -> list[asyncpg.Record]:
    """Every running campaign whose breaker is on, with its window's figures."""
    return list(await conn.fetch(_WINDOWS))


async def trip(conn: Connection, campaign_id: str, reason: dict[str, Any]) -> asyncpg.Record | None:
    """Pause a running campaign, saying why (None when it is no longer running)."""
    return await conn.fetchrow(_TRIP, campaign_id, reason)


async def new_window(conn: Connection, campaign_id: str) -> None:
    """Start the campaign's window afresh (a person resumed it) and forget why it paused."""
    await conn.execute(_NEW_WINDOW, campaign_id)
    await conn.execute(_CLEAR_REASON, campaign_id)


async def count_opt_out(conn: Executor, campaign_id: str) -> None:
    """A contact opted out in answer to one of the campaign's messages."""
    await conn.execute(_OPT_OUT, campaign_id)


async def count_opt_out_of_latest(conn: Executor, contact_id: str, channel: str) -> None:
    """A contact opted out of a channel (a one-click unsubscribe): counted against the campaign of
    the latest message it had on that channel."""
    campaign_id = await conn.fetchval(_LATEST_CAMPAIGN, contact_id, channel)
    if campaign_id is not None:
        await conn.execute(_OPT_OUT, campaign_id)
