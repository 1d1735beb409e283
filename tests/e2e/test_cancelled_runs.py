"""A run its campaign's cancel cuts off reads `cancelled` wherever a run is read (`/runs`,
`/results?run=N`): one that had not sent anything yet (scheduled, one-off or recurring) and one
partly sent. One whose sends had all gone completes as it would have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def _run(http, campaign: str, headers: dict[str, str], seq: int) -> dict | None:
    _status, runs = await call(http, "GET", campaign + "/runs", headers)
    found = [r for r in runs["data"] if r["run"] == seq]
    return found[0] if found else None


async def _ended(http, campaign: str, headers: dict[str, str], seq: int) -> dict:
    """Run `seq` once it has ended, either way (the scheduler applies a cancel after the API)."""

    async def ended():
        run = await _run(http, campaign, headers, seq)
        return run if run and run["status"] in ("completed", "cancelled") else None

    return await wait_until(ended, timeout=30, message=f"run {seq} ended")


@pytest.mark.parametrize("recurrence", [None, {"frequency": "daily", "count": 2}], ids=["one-off", "recurring"])
async def test_a_run_cancelled_before_it_ran_reads_cancelled(http, system, account, recurrence):
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    request = {"name": "Later", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone(), new_phone()],
               "message_template": "Hi", "scheduled_at": "2030-01-07T09:00:00", "timezone": "America/New_York",
               "status": "scheduled"}
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {**request, **({"recurrence": recurrence} if recurrence else {})})
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    async def planned():  # its deliveries are written, due in 2030: nothing left to plan
        run = await _run(http, campaign, account.headers, 1)
        return run if run and run["status"] == "planned" else None

    await wait_until(planned, timeout=30, message="run 1 planned")
    status, cancelled = await call(http, "POST", campaign + "/cancel", account.headers)
    assert (status, cancelled["status"]) == (200, "cancelled"), cancelled

    run = await _ended(http, campaign, account.headers, 1)
    assert run["status"] == "cancelled", run
    assert (run["results"]["cancelled"], run["results"]["pending"], run["results"]["sent"]) == (2, 0, 0), run
    status, alone = await call(http, "GET", campaign + "/results?run=1", account.headers)
    assert (status, alone["run_status"], alone["cancelled"]) == (200, "cancelled", 2), alone
    _status, runs = await call(http, "GET", campaign + "/runs", account.headers)
    assert [r["status"] for r in runs["data"]] == ["cancelled"] * (2 if recurrence else 1)
    # a run still to come that the cancel cut off counts the campaign's contacts, cancelled
    for listed in runs["data"]:
        assert (listed["results"]["total_contacts"], listed["results"]["cancelled"]) == (2, 2), listed
    if recurrence:
        status, later = await call(http, "GET", campaign + "/results?run=2", account.headers)
        assert (status, later["run_status"], later["total_contacts"], later["cancelled"]) == (200, "cancelled", 2, 2)


async def test_a_run_partly_sent_when_cancelled_reads_cancelled(http, system, account, fake_twilio):
    # the time a minute ago, read in each contact's zone: passed in UTC (sent at launch), eleven hours
    # away in Pago Pago (the test's account has no quiet hours)
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    now, later = new_phone(), new_phone()
    wall = (datetime.now(UTC) - timedelta(minutes=1)).replace(tzinfo=None, second=0, microsecond=0)
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Half", "type": "sms", "agent_id": agent["id"], "message_template": "Hi",
         "contacts": [{"phone": now, "timezone": "UTC"}, {"phone": later, "timezone": "Pacific/Pago_Pago"}],
         "scheduled_at": wall.isoformat(), "timezone": "contact_local", "status": "scheduled"},
    )
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    async def sent():
        status, results = await call(http, "GET", campaign + "/results?run=1", account.headers)
        return status == 200 and results["sent"] == 1  # (a 404 until run 1 is on record)

    await wait_until(sent, timeout=30, message="the first contact's message sent")
    assert len(fake_twilio.sent_to(now)) == 1
    assert not fake_twilio.sent_to(later)
    status, cancelled = await call(http, "POST", campaign + "/cancel", account.headers)
    assert (status, cancelled["status"]) == (200, "cancelled"), cancelled

    run = await _ended(http, campaign, account.headers, 1)
    assert run["status"] == "cancelled", run
    status, alone = await call(http, "GET", campaign + "/results?run=1", account.headers)
    assert (alone["run_status"], alone["sent"], alone["cancelled"], alone["pending"]) == ("cancelled", 1, 1, 0), alone
    assert not fake_twilio.sent_to(later)


async def test_a_campaign_cancelled_before_the_scheduler_saw_its_launch_counts_everyone_cancelled(
    http, system, account, db
):
    # the scheduler held back from the launch: every consumer's first look at a message waits on
    # the table the test keeps locked (the API's launch and cancel write nothing there)
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "Quick", "type": "sms", "agent_id": agent["id"], "message_template": "Hi",
                               "contacts": [new_phone() for _ in range(3)]})
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"
    plans = "SELECT count(*) FROM processed_messages WHERE consumer = 'scheduler.plan'"
    before = await db.fetchval(plans)
    async with db.transaction():
        await db.execute("LOCK TABLE processed_messages IN EXCLUSIVE MODE")
        status, launched = await call(http, "POST", campaign + "/launch", account.headers)
        assert status == 200, launched
        status, cancelled = await call(http, "POST", campaign + "/cancel", account.headers)
        assert (status, cancelled["status"], cancelled["total_contacts"]) == (200, "cancelled", 3), cancelled
        status, results = await call(http, "GET", campaign + "/results", account.headers)
        assert (results["total_contacts"], results["cancelled"], results["pending"]) == (3, 3, 0), results
        assert not await db.fetchval("SELECT count(*) FROM runs WHERE campaign_id = $1", body["id"])

    async def seen() -> bool:  # the scheduler has had the launch (and planned nothing for it)
        return await db.fetchval(plans) > before

    await wait_until(seen, timeout=30, message="the scheduler saw the launch")
    assert not await db.fetchval("SELECT count(*) FROM runs WHERE campaign_id = $1", body["id"])
    status, results = await call(http, "GET", campaign + "/results", account.headers)
    assert (results["total_contacts"], results["cancelled"], results["pending"], results["sent"]) == (3, 3, 0, 0)
    status, listed = await call(http, "GET", system.api_url + "/campaigns", account.headers)
    mine = [c for c in listed["data"] if c["id"] == body["id"]]
    assert [c["status"] for c in mine] == ["cancelled"], listed
