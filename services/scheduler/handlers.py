"""Bus handlers and run planning: a launched campaign gets run 1 planned (and, when it recurs, its
next run recorded); a cancelled one loses its pending sends and future runs, and the runs it cut
short read cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import structlog

from services.scheduler.releaser import Releaser
from shared.db import accounts, balance, deliveries
from shared.db.connection import Connection
from shared.db.processed import first_time
from shared.ids import new_id
from shared.messages.campaign_events import CampaignCancelled, CampaignLaunched, RunCompleted
from shared.planning import RunContext, next_run, plan_contact
from shared.reservations import reserve_run
from shared.row import Row

log = structlog.get_logger()


class _Ended(Exception):
    """The campaign ended while a chunk of it was being planned: the chunk is rolled back."""


#: Contacts planned between two yields to the event loop (planning is CPU work: 200 take a few ms).
YIELD_EVERY = 200


class Handlers:
    """The scheduler's message handlers and run planning, bound to a pool and a clock.

    A run is planned in chunks of `chunk` contacts, each committed on its own (the releaser may
    send a run's first contacts while the rest are planned): its first chunk, of `first_chunk`,
    as soon as it is launched, the others by `plan_chunks` (the planner loop). A run being planned
    is row-locked chunk by chunk, so schedulers share the work, and one that died mid-run leaves
    its cursor (`planned_through`) for another to go on from.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime] | None = None,
        *,
        chunk: int = 1000,
        first_chunk: int = 50,
        releaser: Releaser | None = None,
    ):
        self._pool = pool
        self._clock = clock or (lambda: datetime.now(UTC))
        self._chunk = chunk
        self._first_chunk = first_chunk
        self._releaser = releaser

    async def campaign_launched(self, message: Any) -> None:
        """Start run 1 of a launched campaign and plan its first contacts."""
        assert isinstance(message, CampaignLaunched)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await first_time(conn, "scheduler.plan", message.message_id):
                return
            campaign = await deliveries.campaign(conn, message.campaign_id, lock=True)
            if campaign is None or campaign["status"] not in ("scheduled", "running", "paused"):
                log.info("run.not_planned", reason="campaign not live", status=campaign and campaign["status"])
                return
            account = cast(asyncpg.Record, await accounts.get(conn, campaign["account_id"]))  # a foreign key
            run_id = await self.start_run(conn, campaign, account, seq=1)
            # its first contacts in the same transaction: the first sends are released at once
            planned, released = 0, []
            if run_id is not None:
                first = cast(asyncpg.Record, await deliveries.planning_run(conn, run_id))  # (this transaction's)
                planned = await self._plan(conn, first, campaign, account, self._first_chunk)
                if planned and self._releaser is not None:  # and those due now released, still in it
                    released = await self._releaser.release_launched(conn, campaign)
        if self._releaser is not None:
            self._releaser.released(released)
        self._on_planned(planned)

    def _on_planned(self, planned: int) -> None:
        """Deliveries were planned (committed): the releaser looks at once."""
        if planned and self._releaser is not None:
            self._releaser.wake()

    async def plan_due_runs(self) -> int:
        """Start the pending runs of recurring campaigns whose time has come; how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = await deliveries.due_runs(conn, self._clock())
            for run in due:
                # Foreign keys: the run's campaign and the campaign's account exist.
                campaign = cast(asyncpg.Record, await deliveries.campaign(conn, run["campaign_id"], lock=True))
                account = cast(asyncpg.Record, await accounts.get(conn, campaign["account_id"]))
                await self.start_run(conn, campaign, account, seq=run["seq"], run_id=run["id"], wall=run["occurs_wall"])
        return len(due)

    async def start_run(
        self,
        conn: Connection,
        campaign: asyncpg.Record,
        account: asyncpg.Record,
        *,
        seq: int,
        run_id: str | None = None,
        wall: datetime | None = None,
    ) -> str | None:
        """Start planning one run (in the caller's transaction) and, for a recurring campaign,
        record the next one; the run's id, or None when it is not to be planned."""
        now = self._clock()
        if seq > 1 and not await self._reserve(conn, campaign, account, seq, run_id):
            return None
        context = RunContext.build(run_id or new_id("run"), campaign, account, now, wall=wall)
        if run_id is None:
            if not await deliveries.insert_run(
                conn, context.run_id, campaign["id"], account["id"], seq, context.schedule.instant, context.first_wall
            ):
                return None  # started already
        else:
            await deliveries.start_run(conn, run_id)
        await deliveries.ensure_flow(conn, campaign["id"])
        upcoming = next_run(
            campaign,
            account,
            await deliveries.first_wall(conn, campaign["id"]) or context.first_wall,
            context.first_wall,
        )
        if upcoming is not None:
            occurs_wall, plan_at, occurs_at = upcoming
            await deliveries.insert_pending_run(
                conn, new_id("run"), campaign["id"], account["id"], seq + 1, occurs_wall, plan_at, occurs_at
            )
        log.info(
            "run.started",
            campaign_id=campaign["id"],
            run_id=context.run_id,
            seq=seq,
            next_run=upcoming and upcoming[0].isoformat(),
        )
        return context.run_id

    async def plan_chunks(self, budget: int) -> int:
        """Plan chunks of the runs being planned until about `budget` contacts are planned or none
        is left; how many contacts."""
        done = 0
        while done < budget:
            planned = await self.plan_chunk(None, self._chunk)
            if planned is None:
                break
            done += max(planned, 1)
        return done

    async def plan_chunk(self, run_id: str | None, limit: int) -> int | None:
        """Plan the next `limit` contacts of a run being planned (that one, or any); how many,
        or None when no run was there to plan."""
        try:
            return await self._plan_chunk(run_id, limit)
        except _Ended:
            return 0

    async def _plan_chunk(self, run_id: str | None, limit: int) -> int | None:
        async with self._pool.acquire() as conn, conn.transaction():
            run = await deliveries.planning_run(conn, run_id)
            if run is None:
                return None
            campaign = cast(asyncpg.Record, await deliveries.campaign(conn, run["campaign_id"]))
            if campaign["status"] not in ("scheduled", "running", "paused"):
                await deliveries.drop_run(conn, run["id"])
                log.info("run.dropped", campaign_id=campaign["id"], run_id=run["id"], status=campaign["status"])
                return 0
            account = cast(asyncpg.Record, await accounts.get(conn, campaign["account_id"]))
            planned = await self._plan(conn, run, campaign, account, limit)
            if not await deliveries.still_live(conn, campaign["id"]):
                # cancelled while this chunk was planned: its deliveries must not outlive the cancel
                # (which did not see them): they go with this transaction, and the run at the next chunk
                raise _Ended
        self._on_planned(planned)
        return planned

    async def _plan(
        self, conn: Connection, run: Row, campaign: asyncpg.Record, account: asyncpg.Record, limit: int
    ) -> int:
        """Plan (in the caller's transaction) the run's next `limit` contacts after its cursor
        `planned_through`, and move the cursor on (or mark it planned, when that was the last)."""
        wall = run["occurs_wall"] if run["seq"] > 1 else None
        context = RunContext.build(run["id"], campaign, account, self._clock(), wall=wall, next_wall=run["next_wall"])
        contacts = await deliveries.recipients_after(
            conn, account["id"], campaign["id"], campaign["group_ids"], run["planned_through"] or "", limit
        )
        records = []
        for start in range(0, len(contacts), YIELD_EVERY):  # (the loop stays free for launches and releases)
            records += [plan_contact(context, contact) for contact in contacts[start : start + YIELD_EVERY]]
            await asyncio.sleep(0)
        await deliveries.copy_planned(conn, records)
        if len(contacts) < limit:
            await deliveries.finish_planning(conn, run["id"])
            log.info("run.planned", campaign_id=campaign["id"], run_id=run["id"], seq=run["seq"])
        else:
            await deliveries.planned_through(conn, run["id"], contacts[-1]["id"])
        return len(contacts)

    async def _reserve(
        self, conn: Connection, campaign: asyncpg.Record, account: asyncpg.Record, seq: int, run_id: str | None
    ) -> bool:
        """Hold back a later run's estimate; when the balance cannot cover it the campaign fails."""
        reserved, cost = await reserve_run(conn, account, campaign)
        if reserved:
            return True
        reason = f"run {seq}: the balance ({account['balance']}) cannot cover its estimated cost ({cost})"
        await deliveries.fail_campaign(conn, campaign["id"], reason)
        if run_id is not None:
            await deliveries.drop_run(conn, run_id)
        log.warning("campaign.failed", campaign_id=campaign["id"], reason=reason)
        return False

    async def campaign_cancelled(self, message: Any) -> None:
        """End every delivery of a cancelled campaign that has not been handed to a provider, and
        the runs they belonged to (never to read `completed` once nothing of theirs is left open)."""
        assert isinstance(message, CampaignCancelled)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await first_time(conn, "scheduler.cancel", message.message_id):
                return
            count = await deliveries.cancel_pending(conn, message.campaign_id)
            await balance.refund(conn, [message.campaign_id])
        log.info("run.cancelled", campaign_id=message.campaign_id, deliveries=count)


__all__ = ["Handlers", "RunCompleted"]
