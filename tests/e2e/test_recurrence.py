"""A recurring campaign: one run per occurrence, each with its own deliveries and results,
surviving a scheduler restart; the scheduler's clock runs 10 simulated hours per real second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.db.pool import connect
from tests.conftest import clocked_system, make_account
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e

RATE = 36000


@pytest.fixture(scope="module")
def fast_clock(infra, fake_twilio, tmp_path_factory):
    """A system of its own whose scheduler's clock reads 2026-03-09T12:00Z twenty seconds from now."""
    with clocked_system(infra, fake_twilio, tmp_path_factory.mktemp("recur"), "recur",
                        "2026-03-09T12:00:00Z", RATE) as found:
        yield found


async def test_daily_runs_each_with_its_own_results(http, fast_clock, fake_twilio):
    system, url = fast_clock
    db = await connect(url)
    try:
        account = await make_account(db)
        status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
        tokyo, new_york = new_phone(), new_phone()
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "Daily check-in", "type": "sms", "agent_id": agent["id"],
             "contacts": [{"phone": tokyo, "timezone": "Asia/Tokyo"},
                          {"phone": new_york, "timezone": "America/New_York"}],
             "message_template": "Good morning!", "scheduled_at": "2026-03-10T09:00:00",
             "timezone": "contact_local", "recurrence": {"frequency": "daily", "count": 3},
             "status": "scheduled"},
        )
        assert status == 201, body
        assert body["recurrence"]["count"] == 3
        campaign = f"{system.api_url}/campaigns/{body['id']}"

        async def run_completed(seq: int):
            _status, runs = await call(http, "GET", campaign + "/runs", account.headers)
            done = [r for r in runs["data"] if r["run"] == seq and r["status"] == "completed"]
            return done[0] if done else None

        await wait_until(lambda: run_completed(1), timeout=60, message="run 1 completed")
        # the scheduler dies between runs; the next run is in the database and still happens
        system.services["scheduler"].kill()
        system.services["scheduler"].start()
        await wait_until(lambda: run_completed(3), timeout=60, message="run 3 completed")

        async def campaign_completed():
            _status, c = await call(http, "GET", campaign, account.headers)
            return c["status"] == "completed"

        await wait_until(campaign_completed, timeout=30)
        status, runs = await call(http, "GET", campaign + "/runs", account.headers)
        rows = await db.fetch(
            "SELECT r.seq, d.to_address, d.send_at, (d.plan_reason->>'deferred_from')::timestamptz AS deferred_from"
            " FROM deliveries d JOIN runs r ON r.id = d.run_id WHERE d.campaign_id = $1", body["id"],
        )
    finally:
        await db.close()
    assert [r["run"] for r in runs["data"]] == [1, 2, 3]
    for run in runs["data"]:
        assert run["results"]["total_contacts"] == 2
        assert run["results"]["sent"] == 2
    expected = []
    for day in (10, 11, 12):
        expected.append((day - 9, tokyo, datetime(2026, 3, day, 0, 0, tzinfo=UTC)))
        expected.append((day - 9, new_york, datetime(2026, 3, day, 13, 0, tzinfo=UTC)))
    # each run's instant as planned: a release that came late (the restart below takes seconds of a
    # loaded machine, days of this clock) and fell in quiet hours was moved on, and says from when
    got = {(r["seq"], r["to_address"]): r["deferred_from"] or r["send_at"] for r in rows}
    assert sorted(got) == sorted(e[:2] for e in expected)
    for seq, phone, planned in expected:
        if seq > 1:  # the scheduler was down between runs 1 and 2 (hours of simulated time): never early
            assert got[(seq, phone)] >= planned, (seq, phone)
        else:
            assert got[(seq, phone)] == planned, (seq, phone)
    assert len(fake_twilio.sent_to(tokyo)) == len(fake_twilio.sent_to(new_york)) == 3
    status, per_run = await call(http, "GET", campaign + "/results?run=2", account.headers)
    assert (per_run["run"], per_run["sent"], per_run["total_contacts"]) == (2, 2, 2)
    status, total = await call(http, "GET", campaign + "/results", account.headers)
    assert total["sent"] == 6


async def test_a_run_still_to_come_reads_the_same_everywhere(http, system, account):
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Later", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
         "message_template": "Hi", "scheduled_at": "2030-01-07T09:00:00", "timezone": "America/New_York",
         "recurrence": {"frequency": "daily", "count": 2}, "status": "scheduled"},
    )
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    async def both_runs():
        _status, runs = await call(http, "GET", campaign + "/runs", account.headers)
        return runs["data"] if len(runs["data"]) == 2 else None

    runs = await wait_until(both_runs, timeout=30, message="the second run is on record")
    for run in runs:
        _status, alone = await call(http, "GET", f"{campaign}/results?run={run['run']}", account.headers)
        figures = ("total_contacts", "sent", "pending", "failed")
        assert {k: alone[k] for k in figures} == {k: run["results"][k] for k in figures}, (run, alone)
        assert (alone["total_contacts"], alone["pending"]) == (1, 1)
    # 09:00 in New York, each day: an instant, written as every other time is
    assert [r["occurs_at"] for r in runs] == ["2030-01-07T14:00:00Z", "2030-01-08T14:00:00Z"]
    await call(http, "POST", campaign + "/cancel", account.headers)


async def test_a_recurrence_that_ends_before_it_starts_is_refused(http, system, account, db):
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    base = {"name": "Never again", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
            "message_template": "Hi"}
    refused = [
        {"scheduled_at": "2027-03-10T09:00:00", "timezone": "America/New_York", "until": "2020-01-01"},
        {"scheduled_at": "2027-03-10T09:00:00Z", "timezone": "Asia/Tokyo", "until": "2027-03-09"},
        {"until": "2020-01-01"},  # at launch: today
    ]
    for case in refused:
        until = case.pop("until")
        status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                  {**base, **case, "recurrence": {"frequency": "daily", "until": until}})
        assert status == 422, (case, body)
        assert body["error"]["details"] == [
            {"field": "recurrence.until", "reason": body["error"]["details"][0]["reason"]}]
        assert body["error"]["details"][0]["reason"].startswith(f"{until} is before the first run")
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == 0
    # Its last day may be its first: one run. 09:00Z is 18:00 in Tokyo, the same day.
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {**base, "scheduled_at": "2027-03-10T09:00:00Z", "timezone": "Asia/Tokyo",
                               "recurrence": {"frequency": "daily", "until": "2027-03-10"}})
    assert status == 201, body


async def test_a_daily_run_on_an_excluded_day_is_left_to_the_next_run(http, system, account, fake_twilio, db):
    # Given a daily campaign at 09:00 each contact's time whose window excludes tomorrow, its first day
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    phone = "+447400" + new_phone()[-6:]
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Weekdays", "type": "sms", "agent_id": agent["id"], "message_template": "Hi",
         "contacts": [{"phone": phone, "timezone": "Etc/UTC"}], "scheduled_at": f"{tomorrow}T09:00:00",
         "timezone": "contact_local", "sending_window": {"excluded_days": [tomorrow.strftime("%A")]},
         "recurrence": {"frequency": "daily", "count": 2}, "status": "scheduled"},
    )
    assert status == 201, body

    # Then run 1, which the window would move to the next day beside run 2's own send, is skipped
    # for its contact (with why), and run 2 stays to come: one message, not two at once
    async def run_one():
        return await db.fetchrow(
            "SELECT d.* FROM deliveries d JOIN runs r ON r.id = d.run_id WHERE r.campaign_id = $1 AND r.seq = 1",
            body["id"],
        )

    delivery = await wait_until(run_one, message="run 1 planned")
    assert delivery["state"] == "skipped"
    assert "next run" in delivery["error"], delivery["error"]
    runs = await db.fetch("SELECT seq, status FROM runs WHERE campaign_id = $1 ORDER BY seq", body["id"])
    assert [(r["seq"], r["status"]) for r in runs][1] == (2, "pending")
    assert fake_twilio.sent_to(phone) == []
    await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/cancel", account.headers)
