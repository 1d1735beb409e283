"""Bus handlers and run planning: a launched campaign gets run 1 planned (and, when it recurs, its
next run recorded); a cancelled one loses its pending sends and future runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import structlog

from shared.db import balance, deliveries
from shared.db.connection import Connection
from shared.db.processed import first_time
from shared.domain.pricing import estimate_run
from shared.ids import new_id
from shared.messages.campaign_events import CampaignCancelled, CampaignLaunched, RunCompleted
from shared.planning import RunContext, next_run, plan_contact

log = structlog.get_logger()

_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1 FOR UPDATE"
_ACCOUNT = "SELECT * FROM accounts WHERE id = $1"
_FAIL = "UPDATE campaigns SET status = 'failed', status_reason = $2, updated_at = now() WHERE id = $1"


class Handlers:
    """The scheduler's message handlers and run planning, bound to a pool and a clock."""

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], datetime] | None = None):
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
            account = cast(asyncpg.Record, await conn.fetchrow(_ACCOUNT, campaign["account_id"]))  # a foreign key
            await self.plan_run(conn, campaign, account, seq=1)

    async def plan_due_runs(self) -> int:
        """Plan the pending runs of recurring campaigns whose time has come; how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = await deliveries.due_runs(conn, self._clock())
            for run in due:
                # Foreign keys: the run's campaign and the campaign's account exist.
                campaign = cast(asyncpg.Record, await conn.fetchrow(_CAMPAIGN, run["campaign_id"]))
                account = cast(asyncpg.Record, await conn.fetchrow(_ACCOUNT, campaign["account_id"]))
                await deliveries.start_run(conn, run["id"])
                await self.plan_run(conn, campaign, account, seq=run["seq"], run_id=run["id"], wall=run["occurs_wall"])
        return len(due)

    async def plan_run(
        self,
        conn: Connection,
        campaign: asyncpg.Record,
        account: asyncpg.Record,
        *,
        seq: int,
        run_id: str | None = None,
        wall: datetime | None = None,
    ) -> None:
        """Plan one run (in the caller's transaction): its deliveries, streamed and COPYed in
        batches, and for a recurring campaign the next run."""
        now = self._clock()
        if seq > 1 and not await self._reserve(conn, campaign, account, seq, run_id):
            return
        context = RunContext.build(run_id or new_id("run"), campaign, account, now, wall=wall)
        if run_id is None and not await deliveries.insert_run(
            conn, context.run_id, campaign["id"], account["id"], seq, context.schedule.instant, context.first_wall
        ):
            return  # planned already
        await deliveries.ensure_slots(conn, campaign["id"], campaign["max_concurrent"])
        planned = open_count = 0
        async for batch in deliveries.recipients(conn, account["id"], campaign["id"], campaign["group_ids"]):
            records = [plan_contact(context, contact) for contact in batch]
            await deliveries.copy_planned(conn, records)
            planned += len(records)
            open_count += sum(1 for r in records if r[7] == "planned")
        upcoming = next_run(
            campaign,
            account,
            await deliveries.first_wall(conn, campaign["id"]) or context.first_wall,
            context.first_wall,
        )
        if upcoming is not None:
            occurs_wall, plan_at = upcoming
            await deliveries.insert_pending_run(
                conn, new_id("run"), campaign["id"], account["id"], seq + 1, occurs_wall, plan_at
            )
        log.info(
            "run.planned",
            campaign_id=campaign["id"],
            run_id=context.run_id,
            seq=seq,
            deliveries=planned,
            to_send=open_count,
            next_run=upcoming and upcoming[0].isoformat(),
        )

    async def _reserve(
        self, conn: Connection, campaign: asyncpg.Record, account: asyncpg.Record, seq: int, run_id: str | None
    ) -> bool:
        """Hold back a later run's estimate; when the balance cannot cover it the campaign fails."""
        cost = estimate_run(campaign, account)
        if await balance.reserve(conn, account["id"], campaign["id"], cost):
            return True
        reason = f"run {seq}: the balance ({account['balance']}) cannot cover its estimated cost ({cost})"
        await conn.execute(_FAIL, campaign["id"], reason)
        if run_id is not None:
            await conn.execute("UPDATE runs SET status = 'cancelled' WHERE id = $1", run_id)
        log.warning("campaign.failed", campaign_id=campaign["id"], reason=reason)
        return False

    async def campaign_cancelled(self, message: Any) -> None:
        """End every delivery of a cancelled campaign that has not been handed to a provider."""
        assert isinstance(message, CampaignCancelled)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await first_time(conn, "scheduler.cancel", message.message_id):
                return
            count = await deliveries.cancel_pending(conn, message.campaign_id)
            await balance.refund(conn, [message.campaign_id])
        log.info("run.cancelled", campaign_id=message.campaign_id, deliveries=count)


__all__ = ["Handlers", "RunCompleted"]
