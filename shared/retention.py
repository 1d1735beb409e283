"""The retention job (run by the scheduler): what is kept only to recognise repeats goes after
`CAMPAIGNS_RETENTION_DAYS` (callbacks, handled messages), idempotency keys after their 24 hours."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import structlog

from shared.db import idempotency, retention

log = structlog.get_logger()

#: Rows deleted per statement: each is a short transaction, never a long lock.
BATCH = 5000


async def purge(pool: asyncpg.Pool, days: int, batch: int = BATCH) -> dict[str, int]:
    """Delete, batch by batch, callbacks and handled-message records older than `days` and
    idempotency keys past their TTL; how many of each went (logged when any did)."""
    older_than = timedelta(days=days)
    steps: dict[str, Callable[[], Awaitable[int]]] = {
        "webhook_events": lambda: retention.purge_webhook_events(pool, older_than, batch),
        "processed_messages": lambda: retention.purge_processed(pool, older_than, batch),
        "idempotency_keys": lambda: idempotency.purge_expired(pool, batch),
    }
    purged = {}
    for table, step in steps.items():
        total = 0
        while (count := await step()) > 0:
            total += count
            if count < batch:
                break
            await asyncio.sleep(0)  # let the service's other work in between batches
        purged[table] = total
    if any(purged.values()):
        log.info("retention.purged", days=days, **purged)
    return purged
