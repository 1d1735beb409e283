"""The release loop: due deliveries of live campaigns → `dispatch.<channel>`, earliest first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from shared.bus import outbox
from shared.db import balance, deliveries
from shared.messages.campaign_events import RunCompleted
from shared.messages.dispatch import COMMANDS
from shared.planning import next_allowed

log = structlog.get_logger()

RELEASED = Counter("campaigns_deliveries_released_total", "Deliveries released to a dispatch queue", ["channel"])
COMPLETED = Counter("campaigns_completed_total", "Campaign runs completed")


class Releaser:
    """Releases due deliveries in batches (each batch, its commands and state change in one
    transaction, so a crash neither loses nor repeats a release) and completes finished runs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        batch: int,
        interval: float,
        plan_runs: Callable[[], Awaitable[int]] | None = None,
    ):
        self._pool = pool
        self._plan_runs = plan_runs
        self._clock = clock
        self._batch = batch
        self._interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set."""
        while not stop.is_set():
            try:
                if self._plan_runs is not None:
                    await self._plan_runs()
                released = await self.release_once()
                await self.complete_once()
            except Exception as exc:  # the loop must outlive a bad round (e.g. a dropped connection)
                log.warning("release.failed", error=repr(exc))
                released = 0
            if released < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)

    async def release_once(self) -> int:
        """Release one batch; how many deliveries it held."""
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await deliveries.release_due(conn, now, self._batch)
            if not rows:
                return 0
            rows, moves = _on_time(rows, now)
            await deliveries.defer(conn, moves)
            await outbox.add(
                conn,
                [
                    COMMANDS[r["channel"]](
                        account_id=r["account_id"], campaign_id=r["campaign_id"], delivery_id=r["id"]
                    )
                    for r in rows
                ],
            )
        for row in rows:
            RELEASED.labels(row["channel"]).inc()
        log.info("deliveries.released", count=len(rows))
        return len(rows)

    async def complete_once(self) -> int:
        """Complete every run whose deliveries are all final, and settle its campaign."""
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


#: A release this much after its planned instant is late: its hours are checked again.
LATE = timedelta(seconds=60)


def _on_time(rows: list[asyncpg.Record], now: datetime) -> tuple[list[asyncpg.Record], list[tuple[str, datetime]]]:
    """Split released rows into those to send now and those (late, now outside their window or
    quiet hours) to move to their next allowed instant."""
    keep, moves = [], []
    for row in rows:
        later = next_allowed(row["plan_reason"], row["sending_window"], now) if now - row["send_at"] > LATE else None
        if later is None:
            keep.append(row)
        else:
            moves.append((row["id"], later))
    if moves:
        log.info("deliveries.deferred", count=len(moves), reason="released late, outside their hours")
    return keep, moves
