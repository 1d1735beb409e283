"""A dispatcher's composition root: `campaigns dispatcher --channel sms|email|voice`."""

from __future__ import annotations

import asyncio

import structlog

from services.dispatcher.concurrency import SlotGate
from services.dispatcher.handlers import SmsHandler
from services.dispatcher.providers.twilio_sms import TwilioSms
from services.dispatcher.reconciler import Reconciler
from shared import observability
from shared.bus.connection import connect
from shared.bus.consumer import Consumer
from shared.db.pool import create_pool
from shared.runtime import cancel_all
from shared.settings import Settings, twilio_base_url

#: Channels whose provider adapters exist; the others' queues are left alone.
SENDING_CHANNELS = frozenset({"sms"})

log = structlog.get_logger()


async def run(settings: Settings, channel: str, stop: asyncio.Event) -> None:
    """Consume `dispatch.<channel>` until `stop` is set."""
    if channel not in SENDING_CHANNELS:
        # The API refuses to launch such campaigns, so nothing waits on this queue.
        log.warning("dispatcher.channel_not_available", channel=channel)
    pool_size = max(settings.db_pool_max, settings.dispatch_prefetch // 2 + 2)
    async with (
        create_pool(settings.database_url, settings.db_pool_min, pool_size) as pool,
        connect(settings.amqp_url, settings.amqp_prefix) as connection,
    ):
        gate = SlotGate(pool, lease_s=settings.provider_timeout + 30)
        await gate.start()
        provider = TwilioSms(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            twilio_base_url(settings),
            settings.provider_timeout,
        )
        handler = SmsHandler(pool, gate, provider, settings.public_url, settings.default_from_number)
        consumer = Consumer(
            connection, f"dispatch.{channel}", handler, prefix=settings.amqp_prefix, prefetch=settings.dispatch_prefetch
        )
        if channel in SENDING_CHANNELS:
            await consumer.start()
        reconciler = Reconciler(
            pool, provider, settings.default_from_number,
            after_s=settings.reconcile_after, interval_s=max(1.0, settings.reconcile_after / 4),
        )
        tasks = [asyncio.create_task(reconciler.run(stop))] if channel == "sms" else []
        runner, port = await observability.serve_health(
            settings.metrics_host, settings.metrics_port, observability.standard_checks(pool, connection)
        )
        log.info("dispatcher.started", channel=channel, metrics_port=port)
        await stop.wait()
        log.info("dispatcher.stopping", channel=channel)
        await consumer.stop()
        await cancel_all(tasks)
        await gate.stop()
        await provider.close()
        await runner.cleanup()
