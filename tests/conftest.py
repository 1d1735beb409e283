"""Fixtures on real PostgreSQL and RabbitMQ.

Servers: CAMPAIGNS_TEST_DATABASE_URL / CAMPAIGNS_TEST_AMQP_URL (else the services' own settings,
else the local defaults). When those cannot be reached and a Docker engine answers, testcontainers
starts them. Each run gets its own freshly migrated database and its own exchange/queue prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
import pytest

from shared.bus import topology
from shared.db import accounts
from shared.db.migrate import drop_database, migrate
from shared.db.pool import connect
from shared.sandbox import smtp as sandbox_smtp_server
from shared.sandbox.smtp import SandboxSmtp
from shared.sandbox.twilio import FakeTwilio, bound_port, serve
from tests.support import AgentEndpoint, LoopThread, Service, free_port, wait_until

for _var in ("TWILIO_EDGE", "TWILIO_REGION"):
    os.environ.pop(_var, None)

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-auth-token"


@dataclass(frozen=True)
class Infra:
    """Where this test run's database and broker are."""

    database_url: str
    amqp_url: str
    prefix: str


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        return bool(docker.from_env().ping())
    except Exception:
        return False


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    pg = os.environ.get("CAMPAIGNS_TEST_DATABASE_URL") or os.environ.get(
        "CAMPAIGNS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    mq = os.environ.get("CAMPAIGNS_TEST_AMQP_URL") or os.environ.get(
        "CAMPAIGNS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
    )
    if _reachable(pg, 5432) and _reachable(mq, 5672):
        yield pg, mq
        return
    if not _docker_answers():
        pytest.fail(f"neither PostgreSQL ({pg}) and RabbitMQ ({mq}) nor a Docker engine can be reached")
    import warnings

    with warnings.catch_warnings():  # the library's own deprecations are not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.rabbitmq import RabbitMqContainer

    with PostgresContainer("postgres:16") as postgres, RabbitMqContainer("rabbitmq:3.13") as rabbit:
        amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
        yield postgres.get_connection_url(driver=None), amqp


async def _drop_topology(amqp_url: str, prefix: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await topology.delete(channel, prefix)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """A fresh, migrated database and a unique bus prefix for this run; removed afterwards."""
    run = uuid.uuid4().hex[:10]
    with _servers() as (pg, mq):
        database_url = urlunsplit(urlsplit(pg)._replace(path=f"/campaigns_test_{run}"))
        asyncio.run(migrate(database_url))
        try:
            yield Infra(database_url, mq, f"test_{run}.")
        finally:
            asyncio.run(drop_database(database_url))
            with contextlib.suppress(Exception):
                asyncio.run(asyncio.wait_for(_drop_topology(mq, f"test_{run}."), 60))


@pytest.fixture(scope="session")
def fake_twilio() -> Iterator[FakeTwilio]:
    """The fake Twilio (real HTTP, signed callbacks), running in its own thread for the session."""
    thread = LoopThread()
    fake = FakeTwilio(TWILIO_SID, TWILIO_TOKEN)
    runner = thread.run(serve(fake, "127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{bound_port(runner)}"
    fake.thread = thread  # type: ignore[attr-defined]  # tests run the fake's coroutines on its loop
    yield fake
    thread.run(runner.cleanup())
    thread.close()


@pytest.fixture(scope="session")
def sandbox_smtp() -> Iterator[SandboxSmtp]:
    """The sandbox SMTP server (aiosmtpd: records every message, scripted refusals), in its own thread."""
    thread = LoopThread()
    smtp = SandboxSmtp()
    server = thread.run(sandbox_smtp_server.serve(smtp, "127.0.0.1", 0))
    yield smtp
    thread.run(sandbox_smtp_server.stop(server))
    thread.close()


#: The key the test services sign unsubscribe links with (the tests make tokens with it too).
INBOUND_EMAIL_TOKEN = "test-inbound-email-token"
TEST_SECRET_KEY = "test-unsubscribe-secret-key"


@dataclass
class System:
    """The services running as separate processes, and how to reach them."""

    api_url: str
    tracker_url: str
    env: dict[str, str]
    services: dict[str, Service]


def start_system(
    database_url: str, prefix: str, amqp_url: str, fake_twilio: FakeTwilio, logs: Path, **extra_env: str
) -> System:
    """Start api, scheduler, two SMS dispatchers and the tracker as processes; wait until healthy."""
    api_port, tracker_port = free_port(), free_port()
    env = {
        "CAMPAIGNS_DATABASE_URL": database_url,
        "CAMPAIGNS_AMQP_URL": amqp_url,
        "CAMPAIGNS_AMQP_PREFIX": prefix,
        "CAMPAIGNS_API_PORT": str(api_port),
        "CAMPAIGNS_TRACKER_PORT": str(tracker_port),
        "CAMPAIGNS_PUBLIC_URL": f"http://127.0.0.1:{tracker_port}",
        "CAMPAIGNS_TWILIO_API_URL": fake_twilio.url,
        "TWILIO_ACCOUNT_SID": TWILIO_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "CAMPAIGNS_PROVIDER_TIMEOUT": "3",
        "CAMPAIGNS_RECONCILE_AFTER": "4",
        "CAMPAIGNS_RECEIPT_AFTER": "2",
        "CAMPAIGNS_RELEASE_INTERVAL": "0.1",
        "CAMPAIGNS_REQUEUE_AFTER": "20",
        "CAMPAIGNS_DEFAULT_FROM_NUMBER": "+15005550006",
        # small pools: several systems of processes may share one PostgreSQL (max_connections 100)
        "CAMPAIGNS_DB_POOL_MAX": "4",
        "CAMPAIGNS_DISPATCH_PREFETCH": "8",
        "CAMPAIGNS_SECRET_KEY": TEST_SECRET_KEY,
        "CAMPAIGNS_INBOUND_EMAIL_TOKEN": INBOUND_EMAIL_TOKEN,
        "CAMPAIGNS_WEBHOOK_RETRY_BASE": "0.2",  # outbound webhooks tried again within a test's wait
        "CAMPAIGNS_WEBHOOK_RETRY_MAX": "1",
        "CAMPAIGNS_RETENTION_INTERVAL": "1",  # the retention job's rounds within a test's wait
        **extra_env,
    }
    services = {
        "api": Service("api", ["api"], env, logs),
        "tracker": Service("tracker", ["tracker"], env, logs),
        "scheduler": Service("scheduler", ["scheduler"], env, logs),
        "dispatcher-1": Service("dispatcher-1", ["dispatcher", "--channel", "sms"], env, logs),
        "dispatcher-2": Service("dispatcher-2", ["dispatcher", "--channel", "sms"], env, logs),
    }
    if "CAMPAIGNS_SMTP_HOST" in env:  # an SMTP server for this system: an email dispatcher too
        services["dispatcher-email"] = Service("dispatcher-email", ["dispatcher", "--channel", "email"], env, logs)
    if env.pop("TEST_VOICE_DISPATCHER", None):  # (a test's wish, not a setting: a voice dispatcher too)
        services["dispatcher-voice"] = Service("dispatcher-voice", ["dispatcher", "--channel", "voice"], env, logs)
    for service in services.values():
        service.start()
    system = System(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{tracker_port}", env, services)

    async def healthy() -> bool:
        async with aiohttp.ClientSession() as session:
            for url in (system.api_url, system.tracker_url):
                try:
                    async with session.get(url + "/healthz") as response:
                        if response.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
        return all(s.alive() for s in services.values())

    try:
        asyncio.run(wait_until(healthy, timeout=60, message="services healthy"))
    except AssertionError:
        for service in services.values():
            print(f"--- {service.name}\n{service.output()[-3000:]}")
        stop_system(system)
        raise
    return system


def stop_system(system: System) -> None:
    """SIGTERM every service and wait for it."""
    for service in system.services.values():
        service.stop()


@contextlib.contextmanager
def own_database(infra: Infra, suffix: str) -> Iterator[str]:
    """A freshly migrated database beside the run's own, dropped afterwards."""
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=urlsplit(infra.database_url).path + "_" + suffix))
    asyncio.run(migrate(url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@contextlib.contextmanager
def own_system(
    infra: Infra, fake_twilio: FakeTwilio, logs: Path, name: str, amqp_url: str | None = None, **extra_env: str
) -> Iterator[tuple[System, str]]:
    """A system of its own: its own database and queues (reached through `amqp_url`, e.g. a relay;
    default the run's broker), all removed afterwards; (system, database url)."""
    with own_database(infra, name) as url:
        prefix = f"{infra.prefix}{name}."
        system = start_system(url, prefix, amqp_url or infra.amqp_url, fake_twilio, logs, **extra_env)
        try:
            yield system, url
        finally:
            stop_system(system)
            with contextlib.suppress(Exception):
                asyncio.run(asyncio.wait_for(_drop_topology(infra.amqp_url, prefix), 60))


@contextlib.contextmanager
def clocked_system(
    infra: Infra, fake_twilio: FakeTwilio, logs: Path, name: str, start: str, rate: int
) -> Iterator[tuple[System, str]]:
    """A system of its own (database and queues too) whose scheduler's clock reads `start` twenty
    real seconds from now (time to start everything and create a campaign), then runs `rate`x."""
    origin = datetime.now(UTC) + timedelta(seconds=20)
    with own_system(
        infra, fake_twilio, logs, name,
        CAMPAIGNS_CLOCK_START=start, CAMPAIGNS_CLOCK_RATE=str(rate), CAMPAIGNS_CLOCK_ORIGIN=origin.isoformat(),
    ) as (system, url):
        yield system, url


@pytest.fixture(scope="session")
def system(
    infra: Infra, fake_twilio: FakeTwilio, sandbox_smtp: SandboxSmtp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """api, scheduler, two SMS dispatchers, an email dispatcher and the tracker, each its own process."""
    logs = tmp_path_factory.mktemp("services")
    system = start_system(
        infra.database_url, infra.prefix, infra.amqp_url, fake_twilio, logs, **sandbox_smtp.env,
        # tests point agents at servers of their own on this machine (test_outbound_guard.py has none)
        CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
    )
    yield system
    stop_system(system)
    print(f"service logs: {logs}")


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this run's database."""
    conn = await connect(infra.database_url)
    yield conn
    await conn.close()


@dataclass(frozen=True)
class Account:
    """A fresh account and its API key."""

    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.key}"}


async def make_account(conn: asyncpg.Connection, balance: str = "100", quiet_hours: bool = False) -> Account:
    """A new account with a key. Legal quiet hours are off unless asked for: the tests' numbers are
    Californian, and a test must pass at any hour of the day (quiet hours are tested on a clocked
    system, whose scheduler reads a chosen time)."""
    async with conn.transaction():
        account_id = await accounts.create_account(conn, f"test-{uuid.uuid4().hex[:6]}", Decimal(balance))
        await conn.execute("UPDATE accounts SET quiet_hours = $2 WHERE id = $1", account_id, quiet_hours)
        key = await accounts.create_key(conn, account_id)
    return Account(account_id, key)


@pytest.fixture
async def account(db: asyncpg.Connection) -> Account:
    """A new account (every test its own, so tests never see each other's data)."""
    return await make_account(db)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def texting(system: System, fake_twilio: FakeTwilio) -> Any:
    """A contact texting through the fake Twilio (signed inbound webhook to the tracker): an async
    `text(from_, body, to=…)` (to the platform's default number unless `to`) that returns the
    tracker's answer (None: none)."""
    fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"

    async def text(from_: str, body: str, to: str = "+15005550006") -> str | None:
        future = asyncio.run_coroutine_threadsafe(fake_twilio.inbound(from_, to, body), fake_twilio.thread.loop)
        return await asyncio.wrap_future(future)

    return text


@pytest.fixture
async def agent_endpoint() -> AsyncIterator[AgentEndpoint]:
    """A `webhook` and `llm` agent's endpoint on this machine that answers "Sure." and keeps what
    it is sent (`AgentEndpoint`)."""
    endpoint = AgentEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()
