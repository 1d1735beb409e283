"""The circuit breaker's watch: running campaigns whose window's failure, bounce or opt-out rate is
above its threshold are paused with the reason (the dispatchers claim only from running campaigns:
their sends stop at their next claim, on every replica)."""

from __future__ import annotations

import asyncpg
import structlog

from shared.bus import outbox
from shared.db import breaker as db
from shared.domain.breaker import Thresholds, Window, thresholds, trip
from shared.messages.campaign_events import CampaignPaused

log = structlog.get_logger()


async def watch_once(pool: asyncpg.Pool, defaults: Thresholds) -> int:
    """Pause every running campaign over a threshold; how many."""
    tripped = 0
    for row in await db.windows(pool):
        reason = trip(
            thresholds(row["circuit_breaker"], defaults),
            Window(row["finished"], row["failed"], row["accepted"], row["undelivered"], row["opt_outs"]),
        )
        if reason is None:
            continue
        async with pool.acquire() as conn, conn.transaction():
            paused = await db.trip(conn, row["id"], reason)
            if paused is None:  # a person paused, cancelled or it completed meanwhile
                continue
            await outbox.add(conn, [CampaignPaused(account_id=row["account_id"], campaign_id=row["id"])])
        tripped += 1
        log.warning("campaign.breaker_tripped", campaign_id=row["id"], **reason)
    return tripped
