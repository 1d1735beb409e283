"""The tracker's writes: callbacks recorded once, then applied to their delivery."""

from __future__ import annotations

from typing import Any

import asyncpg

_RECORD = """
INSERT INTO webhook_events (provider, kind, dedupe_key, delivery_id, payload)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id
"""
_DELIVERY = """
SELECT id, campaign_id, account_id, state, provider_id, provider_status, sent_at, delivered_at
FROM deliveries WHERE id = $1::text OR ($1::text IS NULL AND provider_id = $2::text) FOR UPDATE
"""
_COLUMNS = frozenset({"state", "provider_status", "sent_at", "delivered_at", "failed_at", "error", "provider_id"})


async def record_event(
    conn: asyncpg.Connection, provider: str, kind: str, dedupe_key: str, delivery_id: str | None, payload: dict[str, Any]
) -> bool:
    """Store a callback; False if the same one was stored before (a retry or a replay)."""
    return await conn.fetchval(_RECORD, provider, kind, dedupe_key, delivery_id, payload) is not None


async def delivery_for_update(conn: asyncpg.Connection, delivery_id: str | None, provider_id: str | None) -> asyncpg.Record | None:
    """The delivery a callback is about (by our id, else by the provider's), row-locked."""
    return await conn.fetchrow(_DELIVERY, delivery_id, provider_id)


async def update_delivery(conn: asyncpg.Connection, delivery_id: str, change: dict[str, Any]) -> None:
    """Apply `change` (column → value; columns from a fixed list) to a delivery."""
    columns = sorted(change)
    if not columns:
        return
    if not set(columns) <= _COLUMNS:
        raise ValueError(f"not a delivery column: {set(columns) - _COLUMNS}")
    assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    await conn.execute(
        f"UPDATE deliveries SET {assignments}, updated_at = now() WHERE id = $1",  # noqa: S608 (fixed columns)
        delivery_id,
        *(change[c] for c in columns),
    )
