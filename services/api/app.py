"""The API's composition root: settings → pool → bus → outbox relay → aiohttp app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from services.api.auth import auth_middleware
from services.api.dashboard import routes as dashboard
from services.api.idempotency import idempotency_middleware
from services.api.routes import add_routes
from services.api.usecases.account import SenderChecks
from shared import observability
from shared.bus.connection import connect
from shared.bus.outbox import Relay
from shared.db.pool import create_pool
from shared.outbound import OutboundPolicy
from shared.providers import smtp_email
from shared.providers.twilio_client import TwilioClient
from shared.runtime import background
from shared.settings import Settings, secret_key, twilio_base_url
from shared.web import error_middleware, serving

log = structlog.get_logger()

#: Largest request body accepted (larger is a 413).
MAX_BODY = 16 * 1024 * 1024


async def _sender_checks(app: web.Application) -> AsyncIterator[None]:
    """What POST /senders asks: the platform's Twilio account (numbers it holds) and a mail relay
    for email senders' verification links (connected on first use)."""
    settings: Settings = app["settings"]
    twilio = TwilioClient(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        twilio_base_url(settings),
        settings.provider_timeout,
    )
    smtp = smtp_email.from_settings(settings, pool_size=1)
    app["senders"] = SenderChecks(
        twilio,
        smtp,
        secret_key(settings),
        settings.public_url,
        settings.default_from_number,
        settings.default_from_email,
    )
    yield
    await smtp.close()
    await twilio.close()


def create_app(settings: Settings, pool: object, connection: object) -> web.Application:
    """The aiohttp application, given an open pool and bus connection."""
    app = web.Application(
        middlewares=[error_middleware("api"), auth_middleware(), idempotency_middleware(), dashboard.middleware()],
        client_max_size=MAX_BODY,
    )
    app["settings"] = settings
    app["pool"] = pool
    app["bus"] = connection
    app["outbound"] = OutboundPolicy(settings.outbound_allow_networks)  # which agent URLs may be saved
    app.cleanup_ctx.append(_sender_checks)
    add_routes(app)
    dashboard.add_routes(app)
    observability.add_routes(app, observability.standard_checks(pool, connection))
    return app


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the API until `stop` is set."""
    async with (
        create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max) as pool,
        connect(settings.amqp_url, settings.amqp_prefix) as connection,
        background(stop, Relay(pool, connection, settings.amqp_prefix).run()),
        serving(create_app(settings, pool, connection), settings.api_host, settings.api_port),
    ):
        log.info("api.listening", url=f"http://{settings.api_host}:{settings.api_port}")
        await stop.wait()
        log.info("api.stopping")
