"""The tracker's composition root: pool → signature checker → aiohttp app with the webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from services.tracker import email_inbound, outbound_webhooks, replies, sender_verify, unsubscribe, voice, webhooks
from services.tracker.signatures import TwilioSignatures
from services.tracker.statuses import StatusBatcher
from shared import observability, outbound
from shared.db.pool import create_pool
from shared.outbound import OutboundPolicy
from shared.providers import smtp_email
from shared.settings import Settings, inbound_email_token, secret_key
from shared.web import error_middleware, serving

log = structlog.get_logger()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client for the agents' webhook and LLM calls: public addresses only (and the
    networks CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS allows), no redirects, bounded answers."""
    async with outbound.session(OutboundPolicy(app["settings"].outbound_allow_networks)) as session:
        app["http"] = session
        yield


async def _smtp(app: web.Application) -> AsyncIterator[None]:
    """The SMTP relay the agents' email answers go out through (connected on first use)."""
    app["smtp"] = smtp_email.from_settings(app["settings"], pool_size=1)
    yield
    await app["smtp"].close()


def create_app(settings: Settings, pool: object) -> web.Application:
    """The tracker's aiohttp application, given an open pool."""
    app = web.Application(middlewares=[error_middleware("tracker")])
    app["pool"] = pool
    app["statuses"] = StatusBatcher(pool)  # type: ignore[arg-type]
    app["signatures"] = TwilioSignatures(settings.twilio_auth_token.get_secret_value(), settings.public_url)
    app.router.add_post("/webhooks/twilio/sms/status", webhooks.sms_status)
    app.router.add_post("/webhooks/twilio/sms/inbound", replies.sms_inbound)
    app["unsubscribe_key"] = secret_key(settings)  # live mode without CAMPAIGNS_SECRET_KEY stops here
    app.router.add_get("/unsubscribe/{token}", unsubscribe.unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe.unsubscribe)
    app.router.add_get("/senders/verify/{token}", sender_verify.confirm_page)
    app.router.add_post("/senders/verify/{token}", sender_verify.confirm)
    app.router.add_post("/webhooks/twilio/voice/answer", voice.voice_answer)
    app.router.add_post("/webhooks/twilio/voice/gather", voice.voice_gather)
    app.router.add_post("/webhooks/twilio/voice/status", voice.voice_status)
    app["inbound_email_token"] = inbound_email_token(settings)
    app.router.add_post("/webhooks/email/inbound", email_inbound.inbound_email)
    app.cleanup_ctx.append(_http_session)
    app["settings"] = settings
    app.cleanup_ctx.append(_smtp)
    app.cleanup_ctx.append(outbound_webhooks.sending)

    async def database() -> bool:
        return bool(await pool.fetchval("SELECT 1"))  # type: ignore[attr-defined]

    observability.add_routes(app, {"database": database})
    return app


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the webhooks until `stop` is set."""
    async with (
        create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max) as pool,
        serving(create_app(settings, pool), settings.tracker_host, settings.tracker_port),
    ):
        log.info(
            "tracker.listening",
            url=f"http://{settings.tracker_host}:{settings.tracker_port}",
            public_url=settings.public_url,
        )
        await stop.wait()
        log.info("tracker.stopping")
