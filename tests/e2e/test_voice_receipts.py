"""A call whose final status callback never reaches the tracker: the voice dispatcher looks the
call up at Twilio, delivers, charges and frees its slot as the callback would have."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import Service, call, new_phone, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def quick_voice(system, tmp_path_factory):
    """One voice dispatcher whose calls may last 5 s (ring 2 s), so a receipt is overdue after
    CAMPAIGNS_RECEIPT_AFTER (2 s here) + 7 s."""
    env = {**system.env, "CAMPAIGNS_DB_POOL_MAX": "4", "CAMPAIGNS_DISPATCH_PREFETCH": "4",
           "CAMPAIGNS_CALL_TIME_LIMIT": "5", "CAMPAIGNS_CALL_RING_TIMEOUT": "2"}
    service = Service("voice-receipts", ["dispatcher", "--channel", "voice"], env,
                      tmp_path_factory.mktemp("voice-receipts"))
    service.start()

    async def started() -> bool:
        return service.alive() and "dispatcher.started" in service.output()

    try:
        asyncio.run(wait_until(started, timeout=60, message="voice dispatcher started"))
        yield service
    finally:
        service.stop()


async def test_a_call_whose_completed_callback_is_lost_is_looked_up_charged_and_freed(
    http, system, account, fake_twilio, quick_voice, db
):
    # Given two contacts, the `completed` callback of one of whose calls never arrives
    phones = [new_phone() for _ in range(2)]
    fake_twilio.lost_callbacks[phones[0]] = {"completed"}
    fake_twilio.call_durations[phones[0]] = 61  # two started minutes
    try:
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
        status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
            "name": "lost receipt", "agent_id": agent["id"], "type": "voice", "contacts": phones,
            "message_template": "Hi from {{agent_name}}.", "max_concurrent": 2, "status": "scheduled",
        })
        assert status == 201, created

        async def delivered():
            rows = await db.fetch(
                "SELECT to_address, state, status_checks, provider_id, cost FROM deliveries WHERE campaign_id = $1",
                created["id"],
            )
            return rows if len(rows) == 2 and all(r["state"] == "delivered" for r in rows) else None

        # Then the call is found completed at Twilio (one lookup), as if its callback had come
        rows = {r["to_address"]: r for r in await wait_until(delivered, timeout=60, message="both calls delivered")}
    finally:
        fake_twilio.lost_callbacks.pop(phones[0], None)
        fake_twilio.call_durations.pop(phones[0], None)
    price = await db.fetchval("SELECT price_voice_minute FROM accounts WHERE id = $1", account.id)
    lost, heard = rows[phones[0]], rows[phones[1]]
    assert (lost["status_checks"], lost["cost"]) == (1, 2 * price)
    assert (heard["status_checks"], heard["cost"]) == (0, price)
    path = f"/Calls/{lost['provider_id']}.json"
    lookups = [r for r in fake_twilio.requests if r.method == "GET" and r.path.endswith(path)]
    assert len(lookups) == 1
    held = await db.fetchval(
        "SELECT in_flight FROM campaign_flow WHERE campaign_id = $1", created["id"]
    )
    assert held == 0
