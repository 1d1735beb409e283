"""The scheduler's composition root: pool → bus → consumers, planner and release loops, outbox relay,
retention."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from services.scheduler.breaker import watch_once
from services.scheduler.handlers import Handlers
from services.scheduler.releaser import Releaser
from shared import observability
from shared.bus.connection import connect
from shared.bus.consumer import Consumer
from shared.bus.outbox import Relay
from shared.clock import from_settings
from shared.db.pool import create_pool
from shared.retention import purge
from shared.runtime import background, every
from shared.settings import Settings, breaker_defaults

log = structlog.get_logger()

#: Contacts the planner plans before it looks for due runs again.
PLAN_BUDGET = 20_000


class Planner:
    """Plans runs: pending runs whose time has come are started, and runs being planned get their
    next chunks; woken when a launch starts a run, and every `interval` seconds besides."""

    def __init__(self, handlers: Handlers, interval: float):
        self._handlers = handlers
        self._interval = interval
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Plan until `stop` is set."""
        while not stop.is_set():
            self.wake.clear()
            planned = 0
            try:
                await self._handlers.plan_due_runs()
                planned = await self._handlers.plan_chunks(PLAN_BUDGET)
            except Exception as exc:  # the loop must outlive a bad round (e.g. a dropped connection)
                log.warning("plan.failed", error=repr(exc))
            if not planned:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self._interval)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run the scheduler until `stop` is set."""
    async with (
        create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max) as pool,
        connect(settings.amqp_url, settings.amqp_prefix) as connection,
    ):
        clock = from_settings(settings.clock_start, settings.clock_rate, settings.clock_origin)
        releaser = Releaser(
            pool,
            clock,
            settings.release_batch,
            settings.release_interval,
            settings.release_horizon,
            settings.requeue_after,
        )
        handlers = Handlers(pool, clock, chunk=settings.plan_chunk, releaser=releaser)
        planner = Planner(handlers, settings.release_interval)

        async def launched(message: object) -> None:
            await handlers.campaign_launched(message)
            planner.wake.set()  # the rest of the run, chunk by chunk

        consumers = [
            Consumer(connection, "scheduler.campaign.launched", launched, prefix=settings.amqp_prefix, prefetch=2),
            Consumer(
                connection,
                "scheduler.campaign.cancelled",
                handlers.campaign_cancelled,
                prefix=settings.amqp_prefix,
                prefetch=10,
            ),
        ]
        for consumer in consumers:
            await consumer.start()
        retention = every(settings.retention_interval, stop, lambda: purge(pool, settings.retention_days), "retention")
        defaults = breaker_defaults(settings)
        breaker = every(settings.breaker_interval, stop, lambda: watch_once(pool, defaults), "breaker")
        relay = Relay(pool, connection, settings.amqp_prefix)
        releaser.on_released = relay.wake
        loops = (relay.run(), releaser.run(stop), planner.run(stop), retention, breaker)
        async with background(stop, *loops):
            runner, port = await observability.serve_health(
                settings.metrics_host, settings.metrics_port, observability.standard_checks(pool, connection)
            )
            log.info("scheduler.started", metrics_port=port)
            await stop.wait()
            log.info("scheduler.stopping")
            for consumer in consumers:
                await consumer.stop()
            await runner.cleanup()
