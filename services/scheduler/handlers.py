"""Bus handlers: a launched campaign gets its run planned; a cancelled one loses its pending sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from services.scheduler.planner import RunContext, plan_contact
from shared.bus import outbox
from shared.db import deliveries
from shared.db.processed import first_time
from shared.ids import new_id
from shared.messages.campaign_events import CampaignCancelled, CampaignCompleted, CampaignLaunched

log = structlog.get_logger()

_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1 FOR UPDATE"
_ACCOUNT = "SELECT * FROM accounts WHERE id = $1"
_COMPLETE_EMPTY = """
UPDATE campaigns SET status = 'completed', completed_at = now(), updated_at = now() WHERE id = $1
"""


class Handlers:
    """The scheduler's message handlers, bound to a pool."""

    def __init__(self, pool: asyncpg.Pool, clock: Any = None):
        self._pool = pool
        self._clock = clock or (lambda: datetime.now(UTC))

    async def campaign_launched(self, message: Any) -> None:
        """Plan run 1 of a launched campaign: one delivery per contact, each with its send time."""
        assert isinstance(message, CampaignLaunched)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await first_time(conn, "scheduler.plan", message.message_id):
                return
            campaign = await conn.fetchrow(_CAMPAIGN, message.campaign_id)
            if campaign is None or campaign["status"] not in ("scheduled", "running", "paused"):
                log.info("run.not_planned", reason="campaign not live", status=campaign and campaign["status"])
                return
            account = await conn.fetchrow(_ACCOUNT, campaign["account_id"])
            await self._plan_run(conn, campaign, account, seq=1)

    async def _plan_run(self, conn: asyncpg.Connection, campaign: asyncpg.Record, account: asyncpg.Record, seq: int) -> None:
        run_id = new_id("run")
        now = self._clock()
        if not await deliveries.insert_run(conn, run_id, campaign["id"], account["id"], seq, campaign["scheduled_at"]):
            return  # planned already
        await deliveries.ensure_slots(conn, campaign["id"], campaign["max_concurrent"])
        context = RunContext.build(run_id, campaign, account, now)
        planned = open_count = 0
        async for batch in deliveries.recipients(conn, account["id"], campaign["id"], campaign["group_ids"]):
            records = [plan_contact(context, contact) for contact in batch]
            await deliveries.copy_planned(conn, records)
            planned += len(records)
            open_count += sum(1 for r in records if r[7] == "planned")
        if open_count == 0:
            await conn.execute(_COMPLETE_EMPTY, campaign["id"])
            await outbox.add(conn, [CampaignCompleted(account_id=account["id"], campaign_id=campaign["id"], run_id=run_id)])
        log.info("run.planned", campaign_id=campaign["id"], run_id=run_id, deliveries=planned, to_send=open_count)

    async def campaign_cancelled(self, message: Any) -> None:
        """End every delivery of a cancelled campaign that has not been handed to a provider."""
        assert isinstance(message, CampaignCancelled)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await first_time(conn, "scheduler.cancel", message.message_id):
                return
            count = await deliveries.cancel_pending(conn, message.campaign_id)
        log.info("run.cancelled", campaign_id=message.campaign_id, deliveries=count)
