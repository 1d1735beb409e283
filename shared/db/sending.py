"""A dispatcher's view of one delivery: claim it, then record what the provider said."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal

import asyncpg

from shared.db import balance, slots
from shared.db.connection import Connection, Executor

_LOAD = """
SELECT d.id, d.state, d.attempts, d.to_address, d.campaign_id, d.contact_id, d.channel,
       c.status AS campaign_status, c.message_template, c.subject_template, c.html_template,
       c.from_number, c.max_retries, c.retry_interval, c.voice,
       ct.first_name, ct.last_name, ct.email, ct.phone, ct.company, ct.metadata,
       ct.opted_out_sms, ct.opted_out_email, ct.opted_out_voice,
       a.name AS agent_name, a.opening_message AS agent_opening, acc.price_sms, acc.price_email, acc.price_voice_minute
FROM deliveries d
JOIN campaigns c ON c.id = d.campaign_id
JOIN contacts ct ON ct.id = d.contact_id
JOIN accounts acc ON acc.id = d.account_id
LEFT JOIN agents a ON a.id = c.agent_id
WHERE d.id = $1
FOR UPDATE OF d
"""
_STATE = "SELECT state FROM deliveries WHERE id = $1"
_SENDING = """
UPDATE deliveries SET state = 'sending', attempts = attempts + 1, sending_at = now(),
    rendered = $2, updated_at = now()
WHERE id = $1
"""
_BACK_TO_PLANNED = "UPDATE deliveries SET state = 'planned', updated_at = now() WHERE id = $1"
_FINISH = """
UPDATE deliveries SET state = $2, error = $3, updated_at = now(),
    failed_at = CASE WHEN $2 = 'failed' THEN now() ELSE failed_at END
WHERE id = $1 AND state IN ('queued', 'sending')
"""
_SENT = """
UPDATE deliveries SET
    state = CASE WHEN state = 'sending' THEN 'sent' ELSE state END,
    provider_id = $2, provider_status = COALESCE(provider_status, $3),
    sent_at = CASE WHEN state IN ('planned', 'queued') THEN sent_at ELSE COALESCE(sent_at, now()) END,
    error = NULL, updated_at = now()
WHERE id = $1
"""
_RETRY = """
UPDATE deliveries SET state = 'planned', send_at = $2, error = $3, updated_at = now()
WHERE id = $1 AND state = 'sending'
"""
_OPT_OUT = "UPDATE contacts SET {column} = true, updated_at = now() WHERE id = $1"
_OPT_OUT_COLUMNS = {"sms": "opted_out_sms", "email": "opted_out_email", "voice": "opted_out_voice"}


async def load_for_update(conn: Connection, delivery_id: str) -> asyncpg.Record | None:
    """The delivery with its campaign, contact and agent, row-locked (inside a transaction)."""
    return await conn.fetchrow(_LOAD, delivery_id)


async def state(pool: asyncpg.Pool, delivery_id: str) -> str | None:
    """The delivery's state now."""
    state_: str | None = await pool.fetchval(_STATE, delivery_id)
    return state_


async def mark_sending(conn: Connection, delivery_id: str, rendered: str) -> None:
    """Record that the provider is about to be called (one attempt more)."""
    await conn.execute(_SENDING, delivery_id, rendered)


async def back_to_planned(conn: Connection, delivery_id: str) -> None:
    """Return a delivery of a paused campaign, to be released again on resume."""
    await conn.execute(_BACK_TO_PLANNED, delivery_id)


async def finish(conn: Executor, delivery_id: str, state_: str, error: str | None) -> None:
    """End a delivery that was not (or could not be) handed over: failed, skipped or cancelled."""
    await conn.execute(_FINISH, delivery_id, state_, error)


async def mark_sent(
    pool: Executor,
    delivery_id: str,
    provider_id: str,
    status: str,
    cost: Decimal | None,
    *,
    free_slot_of: str | None = None,
) -> None:
    """Record the provider's acceptance (never undoing a later status a callback set first),
    charge the send (`cost` None: charged later, e.g. a call when it ends) and, given the
    campaign id, free the send's concurrency slot: one transaction, one commit.

    The charge goes last: it locks the campaign row, which every send of the campaign needs.
    """
    async with _transaction(pool) as conn:
        if free_slot_of is not None:
            await slots.release(conn, free_slot_of, delivery_id)
        await conn.execute(_SENT, delivery_id, provider_id, status)
        if cost is not None:
            await balance.charge(conn, delivery_id, cost)


@asynccontextmanager
async def _transaction(pool: Executor) -> AsyncIterator[Connection]:
    if isinstance(pool, asyncpg.Pool):
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with pool.transaction():
            yield pool


async def schedule_retry(pool: Executor, delivery_id: str, at: datetime, error: str) -> None:
    """Send the delivery back to the scheduler for another try at `at`."""
    await pool.execute(_RETRY, delivery_id, at, error)


async def opt_out(conn: Executor, contact_id: str, channel: str) -> None:
    """Mark the contact opted out of `channel`."""
    await conn.execute(_OPT_OUT.format(column=_OPT_OUT_COLUMNS[channel]), contact_id)


_STUCK = """
SELECT d.id, d.to_address, d.rendered, d.sending_at, d.attempts, d.contact_id,
       c.from_number, c.max_retries, c.retry_interval, acc.price_sms
FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id JOIN accounts acc ON acc.id = d.account_id
WHERE d.channel = $1 AND d.state = 'sending' AND d.sending_at < now() - make_interval(secs => $2)
ORDER BY d.sending_at
LIMIT $3
FOR UPDATE OF d SKIP LOCKED
"""


async def stuck(conn: Connection, channel: str, older_than_s: float, limit: int = 100) -> list[asyncpg.Record]:
    """Deliveries left `sending` longer than any provider call may take (a crash or a timeout)."""
    return await conn.fetch(_STUCK, channel, older_than_s, limit)
