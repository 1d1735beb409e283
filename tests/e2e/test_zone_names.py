"""Time zone names at the API: a file of the tz database that names no zone is a 422 naming the
field, wherever a zone is given; a phone's zone is planned under its current name."""

from __future__ import annotations

import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def test_a_tz_file_that_is_no_zone_is_a_422_naming_the_field(http, system, account):
    api = system.api_url
    # a contact's zone
    status, body = await call(
        http, "POST", api + "/contacts", account.headers, {"phone": new_phone(), "timezone": "localtime"}
    )
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "timezone", "reason": "'localtime' is not an IANA time zone name (e.g. 'America/New_York')"}
    ]
    # the account's default
    status, body = await call(http, "PATCH", api + "/account", account.headers, {"default_timezone": "Factory"})
    assert status == 422, body
    assert body["error"]["details"] == [{"field": "default_timezone", "reason": "not an IANA time zone name"}]
    # a campaign's, and an inline contact's
    status, agent = await call(http, "POST", api + "/agents", account.headers, {"name": "A"})
    assert status == 201, agent
    status, body = await call(
        http, "POST", api + "/campaigns", account.headers,
        {"name": "zones", "type": "sms", "agent_id": agent["id"], "message_template": "Hi", "timezone": "right/UTC",
         "contacts": [{"phone": new_phone(), "timezone": "posix/America/New_York"}]},
    )
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {"timezone", "contacts[0].timezone"}
    # an imported row's
    good, bad = new_phone(), new_phone()
    data = f"phone,timezone\n{good},US/Eastern\n{bad},posixrules\n".encode()
    async with http.post(
        api + "/contacts/import", data=data, headers={**account.headers, "Content-Type": "text/csv"}
    ) as response:
        status, summary = response.status, await response.json()
    assert status == 200, summary
    assert (summary["created"], summary["rejected"]) == (1, 1)
    assert [(e["line"], e["field"]) for e in summary["errors"]] == [(3, "timezone")]
    # nothing else was written: the account keeps its zone, the old name given is kept as given
    status, view = await call(http, "GET", api + "/account", account.headers)
    assert view["default_timezone"] == "Asia/Kolkata"
    status, found = await call(http, "GET", f"{api}/contacts?phone={good}", account.headers)
    assert [c["timezone"] for c in found["data"]] == ["US/Eastern"]
    status, view = await call(http, "PATCH", api + "/account", account.headers, {"default_timezone": "Asia/Calcutta"})
    assert (status, view["default_timezone"]) == (200, "Asia/Calcutta")


async def test_an_indian_number_without_a_zone_is_planned_in_asia_kolkata(http, system, account, db):
    # Given a contact with no zone of its own, whose number phonenumbers places in Asia/Calcutta
    india = "+9198" + new_phone()[-8:]
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    # When a contact_local campaign for 09:00 is launched
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "india", "type": "sms", "agent_id": agent["id"], "contacts": [india],
         "message_template": "Good morning", "scheduled_at": "2027-01-12T09:00:00",
         "timezone": "contact_local", "status": "scheduled"},
    )
    assert status == 201, body

    async def planned():
        return await db.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", body["id"]) == 1

    await wait_until(planned, message="the contact planned")
    # Then the plan names the zone by its current name, at 09:00 there
    status, page = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/deliveries", account.headers)
    assert status == 200, page
    [delivery] = page["data"]
    reason = delivery["plan_reason"]
    assert (reason["zone"], reason["zones"], reason["zone_source"]) == ("Asia/Kolkata", ["Asia/Kolkata"], "phone")
    assert delivery["send_at"] == "2027-01-12T03:30:00Z"
