"""The tracker's view of a voice call: its delivery (with the campaign's retry settings), its
agent and contact, and the changes a call's callbacks make."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import tracking
from shared.db.connection import Connection, Executor
from shared.domain.calls import CallChange, call_status_change

_CALL = """
SELECT d.id, d.account_id, d.campaign_id, d.contact_id, d.channel, d.state, d.rendered, d.attempts,
       d.provider_id, d.provider_status, d.sent_at, d.delivered_at, d.replied_at, d.answered_by,
       c.status AS campaign_status, c.max_retries, c.retry_interval, c.voice, c.agent_id,
       acc.price_voice_minute
FROM deliveries d
JOIN campaigns c ON c.id = d.campaign_id
JOIN accounts acc ON acc.id = d.account_id
WHERE d.id = $1 AND d.channel = 'voice'
FOR UPDATE OF d
"""
_ANSWERED_BY = "UPDATE deliveries SET answered_by = $2, updated_at = now() WHERE id = $1 AND answered_by IS NULL"
_AGENT = "SELECT a.* FROM agents a JOIN campaigns c ON c.agent_id = a.id WHERE c.id = $1"
_CONTACT = "SELECT * FROM contacts WHERE id = $1"
_COLUMNS = frozenset(
    {"answered_by", "state", "provider_status", "sent_at", "delivered_at", "failed_at", "error", "send_at", "cost"}
)


async def call_for_update(conn: Connection, delivery_id: str | None) -> asyncpg.Record | None:
    """The voice delivery a call webhook is about, row-locked (inside a transaction)."""
    if not delivery_id:
        return None
    return await conn.fetchrow(_CALL, delivery_id)


async def agent(conn: Executor, campaign_id: str) -> asyncpg.Record | None:
    """The campaign's agent."""
    return await conn.fetchrow(_AGENT, campaign_id)


async def contact(conn: Executor, contact_id: str) -> asyncpg.Record | None:
    """The contact called."""
    return await conn.fetchrow(_CONTACT, contact_id)


async def update(conn: Connection, delivery_id: str, change: dict[str, Any]) -> None:
    """Apply a call's `change` (column → value; the columns a call changes, and `answered_by`) to
    its delivery."""
    await tracking.update_delivery(conn, delivery_id, change, _COLUMNS)


async def record_answered_by(conn: Connection, delivery_id: str, who: str) -> bool:
    """Record who answered the call, once: the first answer wins. Whether it was recorded now."""
    return await conn.execute(_ANSWERED_BY, delivery_id, who) != "UPDATE 0"


async def apply_status(
    conn: Connection,
    delivery: asyncpg.Record,
    call_sid: str | None,
    status: str,
    duration_s: int | None,
    error_code: str | None,
) -> CallChange:
    """Apply a call status (from its callback, or looked up at Twilio) to its row-locked delivery
    (`call_for_update`), charging the minutes of a completed call. The caller frees the call's slot
    once this has committed, when the outcome says the call `ended`."""
    outcome = call_status_change(delivery, call_sid, status, duration_s, error_code, datetime.now(UTC))
    change = outcome.change
    if outcome.ended:  # settled: the minutes of a completed call, nothing for one never answered
        price: Decimal = delivery["price_voice_minute"]
        change = change | {"cost": price * outcome.minutes if status == "completed" else None}
    await update(conn, delivery["id"], change)
    return outcome
