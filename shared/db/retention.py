"""Ageing out what is kept only to recognise repeats: provider callbacks (`webhook_events`) and
handled bus messages (`processed_messages`), in batches, oldest first."""

from __future__ import annotations

from datetime import timedelta
from typing import LiteralString

from shared.db.connection import Executor

#: The oldest `$2` callbacks (by id, which grows with time: the primary key finds them at once),
#: those of them received before the cutoff deleted.
_WEBHOOK_EVENTS: LiteralString = """
DELETE FROM webhook_events
WHERE id IN (SELECT id FROM webhook_events ORDER BY id LIMIT $2) AND received_at < now() - $1::interval
"""
#: A handful of rows a day (the scheduler's handlers): no index needed to find the old ones.
_PROCESSED: LiteralString = """
DELETE FROM processed_messages WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM processed_messages WHERE processed_at < now() - $1::interval LIMIT $2
))
"""


async def purge_webhook_events(db: Executor, older_than: timedelta, batch: int) -> int:
    """Delete up to `batch` callbacks received more than `older_than` ago; how many went."""
    result: str = await db.execute(_WEBHOOK_EVENTS, older_than, batch)
    return int(result.split()[-1])


async def purge_processed(db: Executor, older_than: timedelta, batch: int) -> int:
    """Delete up to `batch` records of messages handled more than `older_than` ago; how many went."""
    result: str = await db.execute(_PROCESSED, older_than, batch)
    return int(result.split()[-1])
