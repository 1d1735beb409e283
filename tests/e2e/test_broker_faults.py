"""A dropped broker connection: every service's connection to RabbitMQ is cut mid-campaign (a TCP
relay between them and the broker drops them all); they reconnect, and every contact still gets
exactly one message."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import pytest

from shared.db.pool import connect
from tests.conftest import _drop_topology, make_account, own_database, start_system, stop_system
from tests.support import TcpProxy, call, new_phone, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxied(infra, fake_twilio, tmp_path_factory):
    """A system of its own whose services reach RabbitMQ only through a TcpProxy."""
    broker = urlsplit(infra.amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    credentials = broker.netloc.rpartition("@")[0]
    proxied_url = urlunsplit(broker._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))
    name = "brokerdrop"
    try:
        with own_database(infra, name) as url:
            prefix = f"{infra.prefix}{name}."
            system = start_system(url, prefix, proxied_url, fake_twilio, tmp_path_factory.mktemp(name))
            try:
                yield system, url, proxy
            finally:
                stop_system(system)
                with contextlib.suppress(Exception):
                    asyncio.run(_drop_topology(infra.amqp_url, prefix))
    finally:
        proxy.close()


async def test_a_dropped_broker_connection_loses_nothing_and_sends_nothing_twice(http, proxied, fake_twilio):
    system, url, proxy = proxied
    db = await connect(url)
    try:
        account = await make_account(db)
        phones = [new_phone() for _ in range(300)]
        fake_twilio.response_delay = 0.02  # slow enough that the cuts land mid-campaign
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "broker drop", "agent_id": agent["id"], "type": "sms", "contacts": phones,
             "message_template": "hi", "max_concurrent": 20, "status": "scheduled"},
        )
        assert status == 201, body

        def sent() -> int:
            return sum(1 for p in phones if fake_twilio.sent_to(p))

        async def reached(n: int) -> bool:
            return sent() >= n

        cuts = []
        for mark in (60, 150):
            await wait_until(lambda mark=mark: reached(mark), timeout=60, message=f"{mark} sent")
            cuts.append(proxy.cut())
        # The first cut took the api's, the scheduler's and both dispatchers' connections; the
        # second, those already back (the others were still waiting to reconnect)
        assert cuts[0] >= 4, cuts
        assert cuts[1] >= 1, cuts

        async def completed():
            _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
            return r if r["status"] == "completed" else None

        results = await wait_until(completed, timeout=120, message="campaign completed after the cuts")
    finally:
        fake_twilio.response_delay = 0.0
        await db.close()
    counts = [len(fake_twilio.sent_to(p)) for p in phones]
    assert {c: counts.count(c) for c in set(counts)} == {1: 300}  # each contact exactly once
    assert (results["sent"], results["failed"]) == (300, 0)
