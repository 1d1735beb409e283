"""The release loop: due deliveries of live campaigns → `dispatch.<channel>`, each campaign only
as much as it can start soon (`shared/domain/flow.py`), batched into commands that take turns
between campaigns. Woken when a campaign's queue drains or in-flight count drops (NOTIFY `flow`)
and when a run's first contacts are planned, and every `interval` seconds besides."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from shared.bus import outbox
from shared.db import accounts, balance, deliveries
from shared.db.connection import Connection
from shared.db.listen import Listener
from shared.domain import flow
from shared.messages.campaign_events import RunCompleted
from shared.messages.dispatch import COMMANDS
from shared.planning import RunContext, next_allowed, replan_contact

log = structlog.get_logger()

RELEASED = Counter("campaigns_deliveries_released_total", "Deliveries released to a dispatch queue", ["channel"])
COMPLETED = Counter("campaigns_completed_total", "Campaign runs completed")

#: NOTIFY channel naming a campaign whose queue or in-flight count went down (migration 0010).
FLOW_CHANNEL = "flow"
#: Shortest pause between two rounds when woken (NOTIFYs come with every claim and record).
MIN_GAP_S = 0.02
#: Seconds between two looks for deliveries whose command was lost.
SWEEP_S = 30.0


class Releaser:
    """Releases due deliveries (each round, its commands and its state changes in one transaction,
    so a crash neither loses nor repeats a release) and completes finished runs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        batch: int,
        interval: float,
        horizon_s: float = 2.0,
        requeue_after_s: float = 900.0,
    ):
        self._pool = pool
        self._clock = clock
        self._batch = batch
        self._interval = interval
        self._horizon = horizon_s
        self._requeue_after = requeue_after_s
        self._wake = asyncio.Event()
        self._rates: dict[str, flow.Rate] = {}
        self._completed_at = 0.0
        #: Called once a round's commands are committed (the relay publishes them at once).
        self.on_released: Callable[[], None] = lambda: None
        self._swept_at = 0.0

    def wake(self, _payload: str | None = None) -> None:
        """Run a round soon (a campaign has room, or has deliveries planned)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set."""
        async with Listener(self._pool, FLOW_CHANNEL, self.wake):
            while not stop.is_set():
                started = time.monotonic()
                self._wake.clear()
                try:
                    released = await self.release_once()
                    if time.monotonic() - self._completed_at >= min(self._interval, 0.2):
                        self._completed_at = time.monotonic()
                        await self.complete_once()
                except Exception as exc:  # the loop must outlive a bad round (e.g. a dropped connection)
                    log.warning("release.failed", error=repr(exc))
                    released = 0
                if not released:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._interval)
                # rounds at most every MIN_GAP_S: the NOTIFYs come with every claim and record
                gap = MIN_GAP_S - (time.monotonic() - started)
                if gap > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), gap)

    def _credits(self, campaigns: list[asyncpg.Record]) -> list[tuple[str, int]]:
        """Each due campaign's credit, from its flow and its start rate since the last round."""
        now = time.monotonic()
        rates = {}
        credits = []
        for row in campaigns:
            rate = self._rates.get(row["id"])
            rate = flow.Rate(row["started"], now) if rate is None else rate.after(row["started"], now)
            rates[row["id"]] = rate
            credits.append((row["id"], flow.credit(row["max_concurrent"], row["queued"], rate.per_s, self._horizon)))
        self._rates = rates  # campaigns with nothing due are forgotten
        return credits

    async def release_once(self) -> int:
        """Release one round; how many deliveries it held."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            credits = self._credits(await deliveries.due_campaigns(conn, now))
            if not any(n for _, n in credits):
                return 0
            async with conn.transaction():
                rows = await self._release(conn, now, credits)
        self.released(rows)
        return len(rows)

    async def release_launched(self, conn: Connection, campaign: asyncpg.Record) -> list[asyncpg.Record]:
        """In the launch's own transaction, release the first due deliveries of a campaign just
        launched (the credit of a campaign with nothing queued), so that its first sends go out
        without waiting for a round; the caller passes what this returns to `released` once it
        has committed."""
        if campaign["status"] not in ("scheduled", "running"):
            return []
        credit = flow.credit(campaign["max_concurrent"], 0, 0.0, self._horizon)
        return await self._release(conn, self._clock(), [(campaign["id"], credit)])

    async def _release(self, conn: Connection, now: datetime, credits: list[tuple[str, int]]) -> list[asyncpg.Record]:
        """Mark the campaigns' due deliveries queued (up to each one's credit) and write their
        commands to the outbox, in the caller's transaction; the deliveries to send now."""
        rows = await deliveries.release_due(conn, now, credits)
        if not rows:
            return []
        rows = await _follow_contacts(conn, rows, now)
        rows, moves = _on_time(rows, now)
        await deliveries.defer(conn, moves)
        first = {r["campaign_id"]: r for r in rows}
        await outbox.add(
            conn,
            [
                COMMANDS[first[campaign_id]["channel"]](
                    account_id=first[campaign_id]["account_id"], campaign_id=campaign_id, delivery_ids=ids
                )
                for campaign_id, ids in flow.commands(
                    [r["id"] for r in rows], [r["campaign_id"] for r in rows], self._batch
                )
            ],
        )
        return rows

    def released(self, rows: list[asyncpg.Record]) -> None:
        """Once a release committed: its commands are published at once, and counted."""
        if not rows:
            return
        self.on_released()
        for channel in {r["channel"] for r in rows}:
            RELEASED.labels(channel).inc(sum(1 for r in rows if r["channel"] == channel))
        log.info("deliveries.released", count=len(rows), campaigns=len({r["campaign_id"] for r in rows}))

    async def complete_once(self) -> int:
        """Complete every run whose deliveries are all final, and settle its campaign; plan again
        the deliveries whose command was lost."""
        if time.monotonic() - self._swept_at >= min(SWEEP_S, self._requeue_after / 4):
            self._swept_at = time.monotonic()
            requeued = await deliveries.requeue_stale(self._pool, self._clock(), self._requeue_after)
            if requeued:
                log.warning("deliveries.requeued", count=requeued, reason="queued too long: their command was lost")
        async with self._pool.acquire() as conn, conn.transaction():
            runs, campaigns = await deliveries.complete_finished(conn)
            # a run that ended gives back what it held and did not spend
            await balance.refund(conn, [c["campaign_id"] for c in campaigns])
            await outbox.add(
                conn,
                [
                    RunCompleted(account_id=r["account_id"], campaign_id=r["campaign_id"], run_id=r["run_id"])
                    for r in runs
                ],
            )
        for run in runs:
            COMPLETED.inc()
            log.info("run.completed", campaign_id=run["campaign_id"], run_id=run["run_id"])
        for campaign in campaigns:
            log.info("campaign.settled", campaign_id=campaign["campaign_id"], status=campaign["status"])
        return len(runs)


async def _follow_contacts(conn: Connection, rows: list[asyncpg.Record], now: datetime) -> list[asyncpg.Record]:
    """Plan again, as their run plans a contact, the released deliveries whose contact moved since
    (another phone or email, or a time zone of their own): those whose instant is now later go back
    to planned at it (a contact now in another zone gets the campaign's time in that zone, within
    its window and quiet hours there), those the run would now skip are skipped (with why); the
    rest, returned, are sent now."""
    moved = [r["id"] for r in rows if r["contact_moved"]]
    if not moved:
        return rows
    campaigns: dict[str, asyncpg.Record | None] = {}
    accounts_by_id: dict[str, asyncpg.Record | None] = {}
    contexts: dict[str, RunContext] = {}
    plans = []
    for found in await deliveries.replan_inputs(conn, moved):
        context = contexts.get(found["run_id"])
        if context is None:
            if found["campaign_id"] not in campaigns:
                campaigns[found["campaign_id"]] = await deliveries.campaign(conn, found["campaign_id"])
            if found["account_id"] not in accounts_by_id:
                accounts_by_id[found["account_id"]] = await accounts.get(conn, found["account_id"])
            campaign, account = campaigns[found["campaign_id"]], accounts_by_id[found["account_id"]]
            if campaign is None or account is None:
                continue
            wall = found["occurs_wall"] if found["seq"] > 1 else None
            context = contexts[found["run_id"]] = RunContext.build(
                found["run_id"], campaign, account, now, wall=wall, next_wall=found["next_wall"]
            )
        plan = replan_contact(context, found)
        if plan is not None:
            plans.append((found["delivery_id"], *plan))
    await deliveries.replan(conn, plans)
    if plans:
        skipped = sum(1 for p in plans if p[-1] is not None)
        log.info("deliveries.replanned", count=len(plans), skipped=skipped, reason="the contact moved since planned")
    later = {p[0] for p in plans}
    return [r for r in rows if r["id"] not in later]


#: A release this much after its planned instant is late: its hours are checked again.
LATE = timedelta(seconds=60)


def _on_time(rows: list[asyncpg.Record], now: datetime) -> tuple[list[asyncpg.Record], list[tuple[str, datetime]]]:
    """Split released rows into those to send now and those (late, now outside their window or
    quiet hours) to move to their next allowed instant."""
    keep, moves = [], []
    for row in rows:
        late = now - row["send_at"] > LATE and not row["contact_moved"]  # (those were planned again at `now`)
        later = next_allowed(row["plan_reason"], row["sending_window"], now) if late else None
        if later is None:
            keep.append(row)
        else:
            moves.append((row["id"], later))
    if moves:
        log.info("deliveries.deferred", count=len(moves), reason="released late, outside their hours")
    return keep, moves
