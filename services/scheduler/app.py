"""The scheduler's composition root: pool → bus → consumers, release loop, outbox relay."""

from __future__ import annotations

import asyncio

import structlog

from services.scheduler.handlers import Handlers
from services.scheduler.releaser import Releaser
from shared import observability
from shared.bus.connection import connect
from shared.bus.consumer import Consumer
from shared.bus.outbox import Relay
from shared.clock import from_settings
from shared.db.pool import create_pool
from shared.runtime import background
from shared.settings import Settings

log = structlog.get_logger()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run the scheduler until `stop` is set."""
    async with (
        create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max) as pool,
        connect(settings.amqp_url, settings.amqp_prefix) as connection,
    ):
        clock = from_settings(settings.clock_start, settings.clock_rate, settings.clock_origin)
        handlers = Handlers(pool, clock)
        consumers = [
            Consumer(
                connection,
                "scheduler.campaign.launched",
                handlers.campaign_launched,
                prefix=settings.amqp_prefix,
                prefetch=2,
            ),
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
        releaser = Releaser(pool, clock, settings.release_batch, settings.release_interval, handlers.plan_due_runs)
        async with background(stop, Relay(pool, connection, settings.amqp_prefix).run(), releaser.run(stop)):
            runner, port = await observability.serve_health(
                settings.metrics_host, settings.metrics_port, observability.standard_checks(pool, connection)
            )
            log.info("scheduler.started", metrics_port=port)
            await stop.wait()
            log.info("scheduler.stopping")
            for consumer in consumers:
                await consumer.stop()
            await runner.cleanup()
