"""Run the sandbox Twilio as a service."""

from __future__ import annotations

import asyncio

import structlog

from shared.sandbox.smtp import SandboxSmtp
from shared.sandbox.twilio import FakeTwilio, serve
from shared.settings import Settings

log = structlog.get_logger()

#: Seconds a stopping sandbox gives its callbacks under way (`campaigns up` stops the tracker after it).
SETTLE_S = 5.0


async def run(settings: Settings, stop: asyncio.Event, mailbox: SandboxSmtp | None = None) -> None:
    """Serve the sandbox Twilio on 127.0.0.1:CAMPAIGNS_SANDBOX_PORT until `stop` is set (and, given
    the sandbox SMTP server's `mailbox`, `GET /sandbox/emails`: what it received)."""
    fake = FakeTwilio(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        inbound_url=settings.public_url.rstrip("/") + "/webhooks/twilio/sms/inbound",
        owned_numbers={settings.default_from_number},  # the platform's default sender is the account's
        inbound_to=settings.default_from_number,
        mailbox=mailbox,
    )
    runner = await serve(fake, settings.sandbox_host, settings.sandbox_port)
    log.info("sandbox.listening", twilio_url=f"http://{settings.sandbox_host}:{settings.sandbox_port}")
    await stop.wait()
    await fake.settle(SETTLE_S)  # the status callbacks under way still reach the tracker
    await runner.cleanup()
