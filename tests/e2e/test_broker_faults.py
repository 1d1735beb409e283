"""A dropped broker connection: every service's connection to RabbitMQ is cut mid-campaign (a TCP
relay between them and the broker drops them all); they reconnect, and every contact still gets
exactly one message."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from shared.db.pool import connect
from tests.conftest import make_account, own_system
from tests.support import TcpProxy, call, campaign_through_cuts, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxied(infra, fake_twilio, tmp_path_factory):
    """A system of its own whose services reach RabbitMQ only through a TcpProxy."""
    broker = urlsplit(infra.amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    credentials = broker.netloc.rpartition("@")[0]
    proxied_url = urlunsplit(broker._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))
    try:
        with own_system(infra, fake_twilio, tmp_path_factory.mktemp("brokerdrop"), "brokerdrop", proxied_url) as (
            system,
            url,
        ):
            yield system, url, proxy
    finally:
        proxy.close()


async def test_a_dropped_broker_connection_loses_nothing_and_sends_nothing_twice(http, proxied, fake_twilio):
    system, url, proxy = proxied
    db = await connect(url)
    try:
        account = await make_account(db)

        cuts_made = 0

        async def back() -> bool:
            return proxy.open_connections() > 0

        async def cut() -> int:
            nonlocal cuts_made
            if cuts_made:  # the second cut: once some connections are back (they reconnect after 5 s)
                await wait_until(back, timeout=30, message="a broker connection back")
            cuts_made += 1
            return proxy.cut()

        campaign_id, _phones, cuts = await campaign_through_cuts(
            http, system.api_url, account.headers, fake_twilio, cut
        )
        # The first cut took the api's, the scheduler's and both dispatchers' connections; the
        # second, those already back (the others were still waiting to reconnect)
        assert cuts[0] >= 4, cuts
        assert cuts[1] >= 1, cuts
        _s, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    finally:
        await db.close()
    assert (results["sent"], results["failed"]) == (300, 0)
