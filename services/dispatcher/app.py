"""A dispatcher's composition root: `campaigns dispatcher --channel sms|email|voice`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import structlog

from services.dispatcher.email import EmailSender
from services.dispatcher.handlers import SendHandler
from services.dispatcher.lanes import Lanes
from services.dispatcher.receipts import ReceiptPoller, Resolve, call_receipts, sms_receipts
from services.dispatcher.reconciler import Cost, Find, Reconciler
from services.dispatcher.recorder import Recorder
from services.dispatcher.senders import Sender, SmsSender
from services.dispatcher.voice import VoiceSender
from shared import observability
from shared.bus.connection import connect
from shared.bus.consumer import Consumer
from shared.channels import SENDING_CHANNELS
from shared.db.pool import create_pool
from shared.db.sending import SenderRates
from shared.domain.pricing import sms_segments
from shared.providers import smtp_email
from shared.providers.base import Found
from shared.providers.twilio_client import TwilioClient
from shared.providers.twilio_sms import TwilioSms
from shared.providers.twilio_voice import TwilioVoice
from shared.runtime import background
from shared.settings import Settings, secret_key, smtp_address, twilio_base_url

log = structlog.get_logger()

T = TypeVar("T", bound=TwilioClient)

#: A channel's sender, opened for the dispatcher's lifetime, and its background loops.
Loops = list[Callable[[asyncio.Event], Awaitable[None]]]


def _twilio(kind: type[T], settings: Settings) -> T:
    """A Twilio provider (SMS or voice) with the settings' credentials, base URL and timeout, and as
    many connections as the dispatcher may have requests in flight."""
    return kind(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        twilio_base_url(settings),
        settings.provider_timeout,
        connections=settings.dispatch_capacity,
    )


def _lookups(
    settings: Settings,
    pool: asyncpg.Pool,
    channel: str,
    find: Find | None,
    cost: Cost,
    receipts: Resolve | None = None,
    receipts_after: float = 0.0,
) -> Loops:
    """The channel's background loops: the reconciler of deliveries left `sending`, and (with
    `receipts`, unless CAMPAIGNS_RECEIPT_AFTER is 0) the poller of receipts overdue `receipts_after`
    seconds after the send."""
    reconciler = Reconciler(
        pool, channel, find, cost, settings.reconcile_after, interval_s=max(1.0, settings.reconcile_after / 4)
    )
    loops: Loops = [reconciler.run]
    if receipts is not None and settings.receipt_after > 0:
        poller = ReceiptPoller(
            pool,
            channel,
            receipts,
            after_s=receipts_after,
            max_checks=settings.receipt_checks,
            interval_s=max(1.0, settings.receipt_after / 4),
        )
        loops.append(poller.run)
    return loops


@asynccontextmanager
async def sms_sender(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Sender, Loops]]:
    """SMS through Twilio; the reconciler resolves deliveries left `sending`, the receipt poller
    asks for receipts that never came."""
    provider = _twilio(TwilioSms, settings)

    async def find(row: asyncpg.Record) -> Found | None:
        return await provider.find_sms(
            to=row["to_address"],
            from_=row["from_number"] or settings.default_from_number,
            body=row["rendered"] or "",
            since=row["sending_at"],
        )

    loops = _lookups(
        settings,
        pool,
        "sms",
        find,
        lambda row: row["price_sms"] * sms_segments(row["rendered"] or ""),
        sms_receipts(provider),
        settings.receipt_after,
    )
    try:
        yield SmsSender(provider, settings.public_url, settings.default_from_number), loops
    finally:
        await provider.close()


@asynccontextmanager
async def voice_sender(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Sender, Loops]]:
    """Calls through Twilio; the tracker runs the conversation and frees the slot when a call ends
    (the receipt poller, when its final callback never came)."""
    provider = _twilio(TwilioVoice, settings)

    async def find(row: asyncpg.Record) -> Found | None:
        return await provider.find_call(
            to=row["to_address"], from_=row["from_number"] or settings.default_from_number, since=row["sending_at"]
        )

    loops = _lookups(
        settings,
        pool,
        "voice",
        find,
        lambda row: None,  # a call is charged when it ends
        call_receipts(provider),
        # a call can last its time limit: its receipt is overdue only after that
        settings.receipt_after + settings.call_time_limit + settings.call_ring_timeout,
    )
    sender = VoiceSender(
        provider,
        settings.public_url,
        settings.default_from_number,
        ring_timeout=settings.call_ring_timeout,
        default_time_limit=settings.call_time_limit,
    )
    try:
        yield sender, loops
    finally:
        await provider.close()


@asynccontextmanager
async def email_sender(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Sender, Loops]]:
    """Email over SMTP (a small connection pool); deliveries left `sending` are sent again."""
    provider = smtp_email.from_settings(settings)
    host, port = smtp_address(settings)
    sender = EmailSender(provider, settings.public_url, settings.default_from_email, secret_key(settings))
    # SMTP cannot be asked whether it took a message: one left `sending` goes again (same Message-ID),
    # charged by that send
    loops = _lookups(settings, pool, "email", None, lambda row: None)
    log.info("dispatcher.smtp", host=host, port=port, tls=settings.smtp_tls or "starttls-if-offered")
    try:
        yield sender, loops
    finally:
        await provider.close()


#: How each channel's sender is built.
SENDERS: dict[str, Callable[[Settings, asyncpg.Pool], Any]] = {
    "sms": sms_sender,
    "email": email_sender,
    "voice": voice_sender,
}


def capacity(settings: Settings, channel: str) -> int:
    """Provider requests one dispatcher may have in flight: CAMPAIGNS_DISPATCH_CAPACITY (email: no
    more than its SMTP connections, so that a claimed message never waits for one)."""
    if channel == "email":
        return min(settings.dispatch_capacity, settings.smtp_pool_size)
    return settings.dispatch_capacity


async def run(settings: Settings, channel: str, stop: asyncio.Event) -> None:
    """Consume `dispatch.<channel>` until `stop` is set."""
    sending = channel in SENDING_CHANNELS and channel in SENDERS
    if not sending:
        # The API refuses to launch such campaigns, so nothing waits on this queue.
        log.warning("dispatcher.channel_not_available", channel=channel)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        )
        connection = await stack.enter_async_context(connect(settings.amqp_url, settings.amqp_prefix))
        consumer = None
        if sending:
            sender, loops = await stack.enter_async_context(SENDERS[channel](settings, pool))
            lanes = await stack.enter_async_context(
                Lanes(
                    pool,
                    sender,
                    Recorder(pool, channel),
                    capacity=capacity(settings, channel),
                    rates=SenderRates(
                        long_code=settings.sender_rate_long_code,
                        toll_free=settings.sender_rate_toll_free,
                        short_code=settings.sender_rate_short_code,
                        email=settings.sender_rate_email,
                    ),
                )
            )
            consumer = Consumer(
                connection,
                f"dispatch.{channel}",
                SendHandler(lanes),
                prefix=settings.amqp_prefix,
                prefetch=settings.dispatch_prefetch,
            )
            await consumer.start()
            await stack.enter_async_context(background(stop, *(loop(stop) for loop in loops)))
        runner, port = await observability.serve_health(
            settings.metrics_host, settings.metrics_port, observability.standard_checks(pool, connection)
        )
        log.info("dispatcher.started", channel=channel, metrics_port=port, sending=sending)
        await stop.wait()
        log.info("dispatcher.stopping", channel=channel)
        if consumer is not None:
            await consumer.stop()
        await runner.cleanup()
