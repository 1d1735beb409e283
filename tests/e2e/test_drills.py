"""Fault drills (issue 10), each with a campaign in flight: PostgreSQL stopped and started again,
RabbitMQ's application stopped and started (`rabbitmqctl stop_app` / `start_app`), each service
SIGKILLed and started again, an undecodable (poison) message in each dispatch queue. After each,
the campaign completes, every contact got exactly one message (counted at the fake provider; an
email in flight when its dispatcher is killed may arrive twice with one Message-ID: SMTP cannot be
asked whether it took it), the
results equal a recount of the deliveries, and `/readyz` of the services the fault touched said
not-ready and then ready again.

The database and broker drills act on this machine's own servers (the ones CI and the README's
`./run test` use); they are skipped when the tests run against servers they cannot restart.
`-m 'not drills'` leaves every drill out."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest

from shared.db.pool import connect
from tests.conftest import Account, System, make_account, own_system
from tests.support import call, new_phone, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.drills]

#: Services of the drill system; every one has /readyz (api and tracker on their own port, the
#: others on the metrics port they log at start).
SERVICES = ("api", "tracker", "scheduler", "dispatcher-1", "dispatcher-2", "dispatcher-email", "dispatcher-voice")
#: The services that use the broker (the tracker records callbacks in the database alone: it stays
#: ready, and keeps taking receipts, while the broker is away).
BROKER_USERS = tuple(name for name in SERVICES if name != "tracker")
CHANNELS = ("sms", "email", "voice")


@pytest.fixture(scope="module")
def drilled(infra, fake_twilio, sandbox_smtp, tmp_path_factory):
    """A system of its own (database, queues) with SMS, email and voice dispatchers."""
    with own_system(
        infra, fake_twilio, tmp_path_factory.mktemp("drills"), "drills", **sandbox_smtp.env, TEST_VOICE_DISPATCHER="1"
    ) as (system, url):
        yield system, url


def _local(url: str, port: int) -> bool:
    parts = urlsplit(url)
    return parts.hostname in ("127.0.0.1", "localhost") and (parts.port or port) == port


def _needs(infra, server: str) -> None:
    """Skip unless this machine's own server is the one the tests use and can be restarted here."""
    if server == "postgresql":
        ours = _local(infra.database_url, 5432) and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir()
        if not ours:
            pytest.skip("PostgreSQL is not this machine's own cluster (pg_ctlcluster)")
    elif not (_local(infra.amqp_url, 5672) and shutil.which("rabbitmqctl")):
        pytest.skip("RabbitMQ is not this machine's own server (rabbitmqctl)")


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command, done.stdout, done.stderr)


def _postgresql(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action)


class Readiness:
    """Each service's /readyz, as a load balancer would poll it."""

    def __init__(self, system: System, http: aiohttp.ClientSession) -> None:
        self.system = system
        self.http = http

    def url(self, name: str) -> str | None:
        if name == "api":
            return self.system.api_url + "/readyz"
        if name == "tracker":
            return self.system.tracker_url + "/readyz"
        # the latest start's port (a restarted service logs its new one)
        ports = re.findall(r'"metrics_port":\s*(\d+)', self.system.services[name].output())
        return f"http://127.0.0.1:{ports[-1]}/readyz" if ports else None

    async def ready(self, name: str) -> bool:
        url = self.url(name)
        if url is None:
            return False
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def states(self, names: tuple[str, ...] = SERVICES) -> dict[str, bool]:
        return dict(zip(names, await asyncio.gather(*(self.ready(n) for n in names)), strict=True))

    async def none_ready(self, names: tuple[str, ...] = SERVICES) -> bool:
        return not any((await self.states(names)).values())

    async def went_down(self, names: tuple[str, ...] = SERVICES, timeout: float = 30) -> None:
        """Wait until no service says it is ready; fail naming those still ready."""
        try:
            await wait_until(lambda: self.none_ready(names), timeout=timeout, interval=0.1)
        except AssertionError:
            still = [name for name, ok in (await self.states(names)).items() if ok]
            raise AssertionError(f"still ready after {timeout}s without the server: {still}") from None

    async def all_ready(self, names: tuple[str, ...] = SERVICES) -> bool:
        return all((await self.states(names)).values())


async def _account(url: str) -> Account:
    db = await connect(url)
    try:
        return await make_account(db)
    finally:
        await db.close()


#: A recount of one campaign's deliveries.
_RECOUNT = """
SELECT count(*) AS total, count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE state = 'delivered') AS delivered, count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state IN ('planned', 'queued', 'sending')) AS open
FROM deliveries WHERE campaign_id = $1
"""


async def _campaign_through(
    http, drilled, fake_twilio, sandbox_smtp, fault: Callable[[Readiness], Awaitable[None]], channel: str = "sms"
) -> None:
    """A campaign of 40 contacts, slowed at the provider; `fault` once it is sending; then every
    contact sent once, results equal to a recount, every service ready again."""
    system, url = drilled
    readiness = Readiness(system, http)
    await wait_until(readiness.all_ready, timeout=90, message="every service ready before the drill")
    account = await _account(url)
    if channel == "email":
        contacts = [f"drill.{uuid.uuid4().hex[:12]}@example.com" for _ in range(40)]
        sent = sandbox_smtp.sent_to
        extra = {"subject": "Drill"}
    else:
        contacts = [new_phone() for _ in range(40)]
        sent = fake_twilio.sent_to
        extra = {}
    _s, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Drill"})
    fake_twilio.response_delay = sandbox_smtp.response_delay = 0.1
    try:
        status, created = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "drill", "type": channel, "agent_id": agent["id"], "contacts": contacts,
             "message_template": "Drill for {{ first_name | default('you') }}", "status": "scheduled",
             "max_concurrent": 2, **extra},
        )
        assert status == 201, created

        async def sending() -> bool:
            return sum(len(sent(c)) for c in contacts) >= 4

        try:
            await wait_until(sending, timeout=60, message="the campaign sending")
        except AssertionError:
            db = await connect(url)
            try:
                rows = await db.fetch(
                    "SELECT state, send_at, plan_reason::text, error FROM deliveries WHERE campaign_id = $1 LIMIT 3",
                    created["id"])
                raise AssertionError(f"not sending: {[dict(r) for r in rows]}") from None
            finally:
                await db.close()
        await fault(readiness)
    finally:
        fake_twilio.response_delay = sandbox_smtp.response_delay = 0.0

    await wait_until(readiness.all_ready, timeout=90, message="every service ready again")
    expected_delivered = 40 if channel == "sms" else 0  # (no delivery receipts for email)

    async def finished() -> dict | None:
        status, results = await call(
            http, "GET", f"{system.api_url}/campaigns/{created['id']}/results", account.headers
        )
        assert status == 200, results
        done = results["status"] == "completed" and results["delivered"] == expected_delivered
        return results if done else None

    results = await wait_until(finished, timeout=150, interval=0.25, message="the campaign completed")
    # Then every contact got exactly one message, counted at the provider
    counts = {c: len(sent(c)) for c in contacts}
    if channel == "email":
        # SMTP cannot be asked whether it has a message: one the server took just as its sender was
        # killed (before the 250 came back, RFC 1047's window) is sent again after the reconciler's
        # wait, with the same Message-ID, which receivers dedupe on. So: every contact at least once,
        # a second copy only for a send in flight at the kill, and always the same message.
        assert min(counts.values()) == 1, counts
        again = {c: n for c, n in counts.items() if n > 1}
        assert sum(n - 1 for n in again.values()) <= 2, again  # max_concurrent: 2 in flight at most
        for address in again:
            assert len({m.header("Message-ID") for m in sent(address)}) == 1, address
    else:
        assert set(counts.values()) == {1}, {c: n for c, n in counts.items() if n != 1}
    # ...and the results are the deliveries
    db = await connect(url)
    try:
        recount = await db.fetchrow(_RECOUNT, created["id"])
    finally:
        await db.close()
    assert (recount["total"], recount["sent"], recount["failed"], recount["open"]) == (40, 40, 0, 0)
    figures = ("total_contacts", "sent", "delivered", "failed", "pending")
    assert [results[f] for f in figures] == [
        recount["total"], recount["sent"], recount["delivered"], recount["failed"], recount["open"]
    ]


async def test_postgresql_restarted_mid_campaign(http, infra, drilled, fake_twilio, sandbox_smtp):
    _needs(infra, "postgresql")

    async def restart(readiness: Readiness) -> None:
        await asyncio.to_thread(_postgresql, "stop")
        try:
            # every service says not ready while its database is away
            await readiness.went_down()
        finally:
            await asyncio.to_thread(_postgresql, "start")

    await _campaign_through(http, drilled, fake_twilio, sandbox_smtp, restart)


async def test_rabbitmq_stopped_and_started_mid_campaign(http, infra, drilled, fake_twilio, sandbox_smtp):
    _needs(infra, "rabbitmq")

    async def bounce(readiness: Readiness) -> None:
        await asyncio.to_thread(_run, "rabbitmqctl", "stop_app")
        try:
            await readiness.went_down(BROKER_USERS)
        finally:
            await asyncio.to_thread(_run, "rabbitmqctl", "start_app")
            await asyncio.to_thread(_run, "rabbitmqctl", "await_startup")

    await _campaign_through(http, drilled, fake_twilio, sandbox_smtp, bounce)


@pytest.mark.parametrize(
    ("victim", "channel"),
    [("api", "sms"), ("scheduler", "sms"), ("dispatcher-1", "sms"), ("tracker", "sms"),
     ("dispatcher-email", "email"), ("dispatcher-voice", "sms")],
)
async def test_a_service_sigkilled_mid_campaign(http, drilled, fake_twilio, sandbox_smtp, victim, channel):
    system, _url = drilled
    service = system.services[victim]

    async def kill(readiness: Readiness) -> None:
        service.kill()
        try:
            assert not await readiness.ready(victim)
        finally:
            service.start()
        await wait_until(lambda: readiness.ready(victim), timeout=60, message=f"{victim} ready again")

    await _campaign_through(http, drilled, fake_twilio, sandbox_smtp, kill, channel)


async def test_a_poison_message_in_each_dispatch_queue(http, infra, drilled, fake_twilio, sandbox_smtp):
    system, _url = drilled
    prefix = system.env["CAMPAIGNS_AMQP_PREFIX"]
    connection = await aio_pika.connect(infra.amqp_url)
    async with connection:
        channel = await connection.channel()

        async def dead_letters(name: str) -> int:
            declared = await channel.declare_queue(f"{prefix}dispatch.{name}.dlq", passive=True)
            return declared.declaration_result.message_count or 0

        before = {name: await dead_letters(name) for name in CHANNELS}

        async def poison(readiness: Readiness) -> None:
            for name in CHANNELS:
                await channel.default_exchange.publish(
                    aio_pika.Message(b"\x00{not json", message_id=f"poison-{name}-{uuid.uuid4().hex[:8]}"),
                    routing_key=f"{prefix}dispatch.{name}",
                )

            async def all_dead() -> bool:
                return all([await dead_letters(name) == before[name] + 1 for name in CHANNELS])

            # each dispatcher rejects its poison into the dead-letter queue, and goes on
            await wait_until(all_dead, timeout=60, message="each poison message dead-lettered")
            assert all(service.alive() for service in system.services.values())
            assert await readiness.all_ready()

        await _campaign_through(http, drilled, fake_twilio, sandbox_smtp, poison)
