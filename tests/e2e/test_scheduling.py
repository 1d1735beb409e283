"""When each contact is reached, with the scheduler's clock under the test's control."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import clocked_system, make_account
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e

#: 09:00 local on 2026-03-10 (New York and Los Angeles already on DST since 03-08; London not yet).
ZONES = {
    "Asia/Tokyo": datetime(2026, 3, 10, 0, 0, tzinfo=UTC),
    "Asia/Kolkata": datetime(2026, 3, 10, 3, 30, tzinfo=UTC),
    "Europe/London": datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
    "America/New_York": datetime(2026, 3, 10, 13, 0, tzinfo=UTC),
    "America/Los_Angeles": datetime(2026, 3, 10, 16, 0, tzinfo=UTC),
}
#: Simulated seconds per real second: the 17 simulated hours pass in 17 real seconds.
RATE = 3600


@pytest.fixture(scope="module")
def clocked(infra, fake_twilio, tmp_path_factory):
    """A system of its own whose scheduler's clock reads 2026-03-09T23:00Z twenty seconds from now."""
    with clocked_system(infra, fake_twilio, tmp_path_factory.mktemp("clocked"), "clock",
                        "2026-03-09T23:00:00Z", RATE) as found:
        yield found


async def test_contact_local_0900_reaches_each_zone_at_its_own_0900(http, clocked, fake_twilio):
    system, url = clocked
    from shared.db.pool import connect

    db = await connect(url)
    try:
        account = await make_account(db)
        status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
        phones = {zone: new_phone() for zone in ZONES}
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "Morning Check-in", "type": "sms", "agent_id": agent["id"],
             "contacts": [{"phone": phones[z], "timezone": z, "first_name": z.split("/")[1]} for z in ZONES],
             "message_template": "Good morning {{first_name}}!",
             "scheduled_at": "2026-03-10T09:00:00", "timezone": "contact_local", "status": "scheduled"},
        )
        assert status == 201, body

        async def done() -> bool:
            return await db.fetchval(
                "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND sent_at IS NOT NULL", body["id"]
            ) == len(ZONES)

        await wait_until(done, timeout=60, message="all five zones sent")
        rows = {
            r["to_address"]: r
            for r in await db.fetch("SELECT * FROM deliveries WHERE campaign_id = $1", body["id"])
        }
        account_deliveries = await _deliveries(http, system, account, body["id"])
    finally:
        await db.close()
    for zone, expected in ZONES.items():
        row = rows[phones[zone]]
        assert row["send_at"] == expected, zone
        assert row["plan_reason"]["zone"] == zone
        assert row["plan_reason"]["zone_source"] == "contact"
        # released at its own 09:00 by the scheduler's clock: never before, and within one release tick
        released_after = (row["queued_at"] - expected).total_seconds()
        assert 0 <= released_after <= 2 * RATE, (zone, released_after)  # two real seconds of slack under load
        assert len(fake_twilio.sent_to(phones[zone])) == 1
    # and the API shows why each was sent when it was
    assert {d["plan_reason"]["zone"] for d in account_deliveries} == set(ZONES)
    assert all(d["state"] in ("sent", "delivered") for d in account_deliveries)
    # and the provider saw them in the order of their local mornings
    order = [r.get("To") for r in fake_twilio.requests if r.get("To") in set(phones.values())]
    assert order == [phones[z] for z in ZONES]


async def test_a_send_that_falls_due_while_paused_waits_for_its_window_on_resume(
    http, system, account, fake_twilio, db
):
    # Given a contact whose window opens in two hours (UTC zone, so the arithmetic is plain; a UK
    # number, so no US quiet hours narrow the window)
    now = datetime.now(UTC)
    start = (now.hour + 2) % 24
    phone = "+44770090" + new_phone()[-4:]
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "windowed", "type": "sms", "agent_id": agent["id"],
         "contacts": [{"phone": phone, "timezone": "Etc/UTC"}], "message_template": "hi",
         "timezone": "contact_local", "sending_window": {"start_hour": start, "end_hour": (start + 2) % 24},
         "status": "scheduled"},
    )
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    async def planned():
        return await db.fetchrow("SELECT * FROM deliveries WHERE campaign_id = $1", body["id"])

    row = await wait_until(planned)
    opening = row["send_at"]
    assert opening.hour == start
    assert opening.minute == 0
    assert opening > now
    # When it is paused, its time passes (simulated by moving it into the past), and it resumes
    status, _ = await call(http, "POST", campaign + "/pause", account.headers)
    assert status == 200
    await db.execute("UPDATE deliveries SET send_at = now() - interval '1 hour' WHERE id = $1", row["id"])
    status, _ = await call(http, "POST", campaign + "/resume", account.headers)
    assert status == 200

    # Then the releaser does not send it outside its window: it goes back to wait for the opening
    async def deferred():
        again = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", row["id"])
        return again if again["plan_reason"].get("deferred_from") else None

    again = await wait_until(deferred, message="late delivery deferred to its window")
    assert again["state"] == "planned"
    assert again["send_at"] == opening
    assert fake_twilio.sent_to(phone) == []


def _next_opening(zone: str, hour: int, after: datetime) -> datetime:
    """The first instant after `after` at which the local clock of `zone` reads hour:00."""
    local = after.astimezone(ZoneInfo(zone))
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return (at if at > local else at + timedelta(days=1)).astimezone(UTC)


async def test_a_contact_who_moved_after_planning_is_planned_again_where_they_are(
    http, system, account, fake_twilio, db
):
    # Given a contact_local campaign whose window opens in two hours in each contact's zone: one
    # contact with a zone of their own (UTC), one whose UK number gives theirs (London)
    now = datetime.now(UTC)
    start = (now.hour + 2) % 24
    own, by_phone = "+44770092" + new_phone()[-4:], "+447400" + new_phone()[-6:]
    tokyo = "+81901" + "".join(secrets.choice("0123456789") for _ in range(7))
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "moved", "type": "sms", "agent_id": agent["id"],
         "contacts": [{"phone": own, "timezone": "Etc/UTC"}, {"phone": by_phone}], "message_template": "hi",
         "timezone": "contact_local", "sending_window": {"start_hour": start, "end_hour": (start + 2) % 24},
         "status": "scheduled"},
    )
    assert status == 201, body

    async def planned():
        rows = await db.fetch("SELECT * FROM deliveries WHERE campaign_id = $1 AND state = 'planned'", body["id"])
        return {r["to_address"]: r for r in rows} if len(rows) == 2 else None

    rows = await wait_until(planned)
    assert rows[own]["send_at"] == _next_opening("Etc/UTC", start, now)
    assert "Europe/London" in rows[by_phone]["plan_reason"]["zones"]
    assert rows[by_phone]["send_at"] == _next_opening("Europe/London", start, now)
    # When, before their time comes, one moves to UTC-2 and the other's number becomes a Japanese one
    for address, change in ((own, {"timezone": "Etc/GMT+2"}), (by_phone, {"phone": tokyo})):
        status, changed = await call(
            http, "PATCH", f"{system.api_url}/contacts/{rows[address]['contact_id']}", account.headers, change
        )
        assert status == 200, changed
    # and their planned instant comes (simulated: moved to now)
    await db.execute("UPDATE deliveries SET send_at = now() WHERE campaign_id = $1", body["id"])

    # Then the releaser does not send either at the hour planned for where they were: each is
    # planned again, for its window's opening where the contact is now
    async def replanned():
        found = await db.fetch("SELECT * FROM deliveries WHERE campaign_id = $1", body["id"])
        again = {r["contact_id"]: r for r in found if r["plan_reason"].get("replanned_from")}
        return again if len(again) == 2 else None

    again = await wait_until(replanned, message="both deliveries planned again")
    moved_zone, moved_phone = again[rows[own]["contact_id"]], again[rows[by_phone]["contact_id"]]
    assert moved_zone["state"] == moved_phone["state"] == "planned"
    assert moved_zone["send_at"] == _next_opening("Etc/GMT+2", start, now)
    assert moved_zone["plan_reason"]["zone"] == "Etc/GMT+2"
    assert moved_phone["send_at"] == _next_opening("Asia/Tokyo", start, now)
    assert moved_phone["plan_reason"]["zones"] == ["Asia/Tokyo"]
    assert moved_phone["to_address"] == tokyo
    assert fake_twilio.sent_to(own) == fake_twilio.sent_to(by_phone) == fake_twilio.sent_to(tokyo) == []


async def test_contact_local_reads_a_jamaican_number_without_a_zone_in_jamaica(http, system, account, db):
    # Given contacts with no zone of their own: a Jamaican mobile and a New York number
    jamaica, new_york = "+1876210" + new_phone()[-4:], "+1212555" + new_phone()[-4:]
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    # When a contact_local campaign for 09:00 is launched
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "island", "type": "sms", "agent_id": agent["id"], "contacts": [jamaica, new_york],
         "message_template": "Good morning", "scheduled_at": "2027-01-12T09:00:00",
         "timezone": "contact_local", "status": "scheduled"},
    )
    assert status == 201, body

    async def planned():
        count = await db.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", body["id"])
        return count == 2

    await wait_until(planned, message="both contacts planned")
    # Then each is planned at 09:00 in the zone its number implies (not the account's Asia/Kolkata)
    found = {d["to"]: d for d in await _deliveries(http, system, account, body["id"])}
    reason = found[jamaica]["plan_reason"]
    assert (reason["zone"], reason["zone_source"]) == ("America/Jamaica", "phone")
    assert reason["local_send_time"] == "2027-01-12T09:00:00-05:00"
    assert found[jamaica]["send_at"] == "2027-01-12T14:00:00Z"
    assert found[new_york]["plan_reason"]["zone"] == "America/New_York"
    assert found[new_york]["send_at"] == "2027-01-12T14:00:00Z"


async def _deliveries(http, system, account, campaign_id: str) -> list[dict]:
    found, cursor = [], None
    while True:
        url = f"{system.api_url}/campaigns/{campaign_id}/deliveries?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await call(http, "GET", url, account.headers)
        assert status == 200, page
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_dry_run_tells_what_launch_would_do_and_sends_nothing(http, system, account, fake_twilio, db):
    now_phone, later_phone, out_phone, var_phone = (new_phone() for _ in range(4))
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    hour = datetime.now(UTC).hour
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "dry", "type": "sms", "agent_id": agent["id"], "timezone": "contact_local",
         "contacts": [
             {"phone": now_phone, "first_name": "Ann", "timezone": "Etc/UTC", "code": "1"},
             # the window (one hour of the day, in each contact's zone) is open now in UTC only
             {"phone": later_phone, "first_name": "Bo", "timezone": "Etc/GMT-6", "code": "2"},
             {"phone": out_phone, "first_name": "Cy", "timezone": "Etc/UTC", "code": "3"},
             {"phone": var_phone, "first_name": "Di", "timezone": "Etc/UTC"},
         ],
         "sending_window": {"start_hour": hour, "end_hour": (hour + 1) % 24},
         "message_template": "Hi {{first_name}}, code {{code}}"},
    )
    assert status == 201, body
    await db.execute("UPDATE accounts SET quiet_hours = false WHERE id = $1", account.id)
    await db.execute(
        "UPDATE contacts SET opted_out_sms = true WHERE account_id = $1 AND phone = $2", account.id, out_phone
    )
    status, report = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/dry-run", account.headers)
    assert status == 200, report
    assert report["total_contacts"] == 4
    assert report["skipped"] == {"total": 1, "opted_out": 1, "no_address": 0, "no_allowed_time": 0}
    assert report["send_now"] == 2
    assert report["waiting"]["count"] == 1
    assert report["missing_variables"] == {"code": 1}
    assert report["cost"]["sufficient"] is True
    assert "Hi Ann, code 1" in [sample["message"] for sample in report["samples"]]
    # nothing was written or sent
    status, again = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}", account.headers)
    assert again["status"] == "draft"
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", body["id"]) == 0
    assert fake_twilio.sent_to(now_phone) == []
