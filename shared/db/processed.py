"""Consumer-side dedupe: a message's effect and its record commit together, once."""

from __future__ import annotations

from shared.db.connection import Connection

_INSERT = """
INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING 1
"""


async def first_time(conn: Connection, consumer: str, message_id: str) -> bool:
    """Record that `consumer` handles `message_id` now; False if it already did (skip it)."""
    return await conn.fetchval(_INSERT, consumer, message_id) is not None
