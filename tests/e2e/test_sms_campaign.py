"""An SMS campaign end to end: API → scheduler → two dispatchers → fake Twilio → tracker."""

from __future__ import annotations

import pytest

from tests.conftest import Account, System
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def create_agent(http, system: System, account: Account) -> str:
    status, body = await call(
        http, "POST", system.api_url + "/agents", account.headers,
        {"name": "Riley", "instructions": "Confirm appointments.", "opening_message": "Hi!"},
    )
    assert status == 201, body
    assert body["id"].startswith("ag_")
    return body["id"]


async def results(http, system: System, account: Account, campaign_id: str) -> dict:
    status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert status == 200, body
    return body


async def test_campaign_to_50_contacts_completes_with_each_sent_once(http, system, account, fake_twilio):
    # Given an agent and a campaign in the seed's shape to 50 contacts
    agent_id = await create_agent(http, system, account)
    phones = [new_phone() for _ in range(50)]
    status, created = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {
            "name": "Follow-up Campaign",
            "agent_id": agent_id,
            "type": "sms",
            "contacts": phones,
            "message_template": "Hi {{phone}}, this is {{agent_name}} following up.",
            "schedule": "2026-03-10T09:00:00Z",
            "max_concurrent": 5,
        },
    )
    assert status == 201, created
    assert created["status"] == "draft"
    assert created["total_contacts"] == 50
    assert {"id", "name", "status", "type", "agent_id", "total_contacts", "completed", "failed",
            "scheduled_at", "created_at"} <= created.keys()
    assert created["scheduled_at"] == "2026-03-10T09:00:00Z"

    # When it is launched
    status, launched = await call(http, "POST", f"{system.api_url}/campaigns/{created['id']}/launch", account.headers)
    assert status == 200, launched
    assert launched["status"] in ("scheduled", "running")

    # Then every contact gets exactly one message with the rendered text, and it completes
    async def finished() -> dict | None:
        body = await results(http, system, account, created["id"])
        return body if body["status"] == "completed" and body["delivered"] == 50 else None

    final = await wait_until(finished, timeout=60, message="campaign completed and delivered")
    for phone in phones:
        sent = fake_twilio.sent_to(phone)
        assert len(sent) == 1, (phone, len(sent))
        assert sent[0].get("Body") == f"Hi {phone}, this is Riley following up."
        assert (sent[0].get("StatusCallback") or "").startswith(system.tracker_url + "/webhooks/twilio/sms/status")
    assert final["total_contacts"] == 50
    assert final["sent"] == final["delivered"] == 50
    assert final["failed"] == final["pending"] == 0
    status, campaign = await call(http, "GET", f"{system.api_url}/campaigns/{created['id']}", account.headers)
    assert campaign["status"] == "completed"
    assert campaign["completed"] == 50


async def test_max_concurrent_holds_across_two_dispatchers(http, system, account, fake_twilio, db):
    # Given a slow provider and a campaign allowing 2 requests in flight
    agent_id = await create_agent(http, system, account)
    phones = [new_phone() for _ in range(12)]
    fake_twilio.response_delay = 0.15
    fake_twilio.peak_in_flight = 0
    try:
        status, created = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "Throttled", "agent_id": agent_id, "type": "sms", "contacts": phones,
             "message_template": "Hello from {{agent_name}}", "max_concurrent": 2, "status": "scheduled"},
        )
        assert status == 201, created

        async def done() -> bool:
            return (await results(http, system, account, created["id"]))["status"] == "completed"

        await wait_until(done, timeout=60, message="throttled campaign completed")
    finally:
        fake_twilio.response_delay = 0.0
    # Then the provider never saw more than 2 at once, and still got all 12
    assert fake_twilio.peak_in_flight <= 2
    assert fake_twilio.peak_in_flight == 2  # both slots were used (two dispatchers share the work)
    assert sum(len(fake_twilio.sent_to(p)) for p in phones) == 12
    # and nothing is left counted in flight once every send is recorded
    assert await db.fetchval(
        "SELECT in_flight FROM campaign_flow WHERE campaign_id = $1", created["id"]
    ) == 0


async def test_pause_stops_pending_and_resume_finishes(http, system, account, fake_twilio, db):
    agent_id = await create_agent(http, system, account)
    phones = [new_phone() for _ in range(20)]

    async def sent_count() -> int:
        return sum(len(fake_twilio.sent_to(p)) for p in phones)

    fake_twilio.response_delay = 0.1
    try:
        status, created = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "Pausable", "agent_id": agent_id, "type": "sms", "contacts": phones,
             "message_template": "Hi", "max_concurrent": 1},
        )
        campaign = f"{system.api_url}/campaigns/{created['id']}"
        await call(http, "POST", campaign + "/launch", account.headers)
        await wait_until(lambda: _at_least(sent_count, 2), message="first sends")
        # When it is paused
        status, paused = await call(http, "POST", campaign + "/pause", account.headers)
        assert status == 200, paused
        assert paused["status"] == "paused"
        status, again = await call(http, "POST", campaign + "/pause", account.headers)
        assert status == 409
        assert "paused" in again["error"]["message"]

        # Then nothing is left in the dispatchers' hands: every unsent delivery is back to planned
        async def settled() -> bool:
            states = await db.fetch(
                "SELECT state, count(*) FROM deliveries WHERE campaign_id = $1 GROUP BY state", created["id"]
            )
            by_state = {r["state"]: r["count"] for r in states}
            return not by_state.get("queued") and not by_state.get("sending")

        await wait_until(settled, message="no delivery queued or sending after pause")
    finally:
        fake_twilio.response_delay = 0.0
    sent_at_pause = await sent_count()
    planned = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state = 'planned'", created["id"]
    )
    assert planned == 20 - sent_at_pause > 0
    body = await results(http, system, account, created["id"])
    assert body["pending"] == planned
    assert body["sent"] == sent_at_pause

    # When it resumes, the rest go out, each exactly once
    status, resumed = await call(http, "POST", campaign + "/resume", account.headers)
    assert status == 200
    assert resumed["status"] == "running"

    async def completed() -> bool:
        return (await results(http, system, account, created["id"]))["status"] == "completed"

    await wait_until(completed, timeout=60)
    assert all(len(fake_twilio.sent_to(p)) == 1 for p in phones)


async def _at_least(count, n: int) -> bool:
    return await count() >= n


async def test_twilios_magic_test_numbers_fail_as_twilio_fails_them(http, system, account, fake_twilio, db):
    """Given a campaign to Twilio's magic failing numbers (and one that works), each is refused by
    the fake as by Twilio's test credentials (400 with Twilio's error body), and the platform
    records each as failed with the error, at once (no retry), and 21610 as an opt-out."""
    magic = {"+15005550001": 21211, "+15005550002": 21612, "+15005550003": 21408,
             "+15005550004": 21610, "+15005550009": 21614}
    ok = new_phone()
    agent_id = await create_agent(http, system, account)
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "magic", "agent_id": agent_id, "type": "sms", "contacts": [*magic, ok],
        "message_template": "Hi", "status": "scheduled", "max_retries": 3, "retry_interval": 1})
    assert status == 201, created

    async def finished() -> dict | None:
        body = await results(http, system, account, created["id"])
        return body if body["status"] == "completed" else None

    final = await wait_until(finished, timeout=60, message="campaign completed")
    assert (final["failed"], final["delivered"]) == (5, 1)
    rows = {r["to_address"]: r for r in await db.fetch(
        "SELECT to_address, state, attempts, error FROM deliveries WHERE campaign_id = $1", created["id"])}
    for phone, code in magic.items():
        assert (rows[phone]["state"], rows[phone]["attempts"]) == ("failed", 1), rows[phone]
        assert str(code) in rows[phone]["error"], rows[phone]
        assert fake_twilio.creates[phone] == 1
    assert "not a valid phone number" in rows["+15005550001"]["error"]
    assert rows[ok]["state"] == "delivered"
    opted_out = {r["phone"]: r["opted_out_sms"] for r in await db.fetch(
        "SELECT phone, opted_out_sms FROM contacts WHERE account_id = $1", account.id)}
    assert opted_out == {**dict.fromkeys(magic, False), "+15005550004": True, ok: False}

    # The raw answer is Twilio's error body
    import aiohttp
    auth = aiohttp.BasicAuth(fake_twilio.account_sid, fake_twilio.auth_token)
    url = f"{fake_twilio.url}/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    async with http.post(url, data={"To": "+15005550001", "From": "+15005550006", "Body": "x"}, auth=auth) as r:
        assert r.status == 400
        assert await r.json() == {"code": 21211, "status": 400,
                                  "message": "The 'To' number +15005550001 is not a valid phone number.",
                                  "more_info": "https://www.twilio.com/docs/errors/21211"}


async def test_a_contact_whose_number_changes_after_launch_is_sent_at_the_new_one(
    http, system, account, fake_twilio, db
):
    # Given a campaign to two contacts, one send at a time, at a provider taking a second a message
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    fake_twilio.response_delay = 1.0
    try:
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "Moves", "type": "sms", "agent_id": agent["id"], "max_concurrent": 1, "status": "scheduled",
             "contacts": [{"phone": new_phone(), "first_name": "Ann"} for _ in range(2)],
             "message_template": "Hi {{first_name}}, at {{phone}}"},
        )
        assert status == 201, body
        deliveries = "SELECT contact_id, to_address, state FROM deliveries WHERE campaign_id = $1"

        async def one_sending():
            rows = await db.fetch(deliveries, body["id"])
            return rows if any(r["state"] == "sending" for r in rows) else None

        # When one's message is under way, the other contact changes number (and name)
        rows = await wait_until(one_sending, timeout=30, message="the first send under way")
        [waiting] = [r for r in rows if r["state"] != "sending"]
        assert waiting["state"] in ("planned", "queued"), rows
        moved = new_phone()
        status, patched = await call(http, "PATCH", f"{system.api_url}/contacts/{waiting['contact_id']}",
                                     account.headers, {"phone": moved, "first_name": "Bo"})
        assert status == 200, patched

        async def completed():
            _s, results = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
            return results if results["status"] == "completed" else None

        results = await wait_until(completed, timeout=30, message="the campaign completed")
    finally:
        fake_twilio.response_delay = 0.0

    # Then its message went to the new number only, and its delivery says so
    assert (results["sent"], results["failed"], results["skipped"]) == (2, 0, 0), results
    assert fake_twilio.sent_to(waiting["to_address"]) == []
    assert [m.get("Body") for m in fake_twilio.sent_to(moved)] == [f"Hi Bo, at {moved}"]
    to = await db.fetchval("SELECT to_address FROM deliveries WHERE contact_id = $1 AND campaign_id = $2",
                           waiting["contact_id"], body["id"])
    assert to == moved
