"""Dropped database connections: every service's connections to PostgreSQL are terminated
mid-campaign (twice); the pools open new ones, the LISTENs come back, the background loops (release,
outbox relay, reconciler) go on, and every contact still gets exactly one message."""

from __future__ import annotations

import pytest

from shared.db.pool import connect
from tests.conftest import make_account, own_system
from tests.support import call, campaign_through_cuts, wait_until

pytestmark = pytest.mark.e2e

_TERMINATE = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@pytest.fixture(scope="module")
def dbdrop_system(infra, fake_twilio, tmp_path_factory):
    """A system with a database of its own, so terminating its connections touches no other test."""
    with own_system(infra, fake_twilio, tmp_path_factory.mktemp("dbdrop"), "dbdrop") as (system, url):
        yield system, url


async def test_dropped_database_connections_lose_nothing_and_send_nothing_twice(http, dbdrop_system, fake_twilio):
    system, url = dbdrop_system
    db = await connect(url)
    try:
        account = await make_account(db)

        async def cut() -> int:
            terminated: int = await db.fetchval(_TERMINATE)
            return terminated

        campaign_id, _phones, cuts = await campaign_through_cuts(
            http, system.api_url, account.headers, fake_twilio, cut
        )
        assert min(cuts) >= 4, cuts  # at least the scheduler's, the dispatchers' and the tracker's

        async def delivered():
            status, r = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
            return r if status == 200 and r["delivered"] == 300 else None

        results = await wait_until(delivered, timeout=120, message="every message delivered after the cuts")
        stuck = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state NOT IN ('delivered')", campaign_id
        )
    finally:
        await db.close()
    assert (results["sent"], results["failed"], stuck) == (300, 0, 0)
    for service in system.services.values():
        assert service.alive(), service.name
        # a request that met a dropped connection was a 503 (retry), never a 500; no loop died
        for fault in ("http.unhandled", "service.loop_ended"):
            assert fault not in service.output(), (service.name, fault)
