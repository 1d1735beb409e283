"""The API's edges a black-box tester reached: schedules at the calendar's ends, a deliveries
cursor or a run number that is none of ours, and JSON values of the wrong kind (a boolean for a
number, a string or null for a boolean) are each a 422 naming the field, never a 500 or a guess."""

from __future__ import annotations

import pytest

from tests.e2e.test_strict_api import _campaigns, _sms, agent_id
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e

__all__ = ["agent_id"]  # (a fixture, used by name)

_RANGE = "a schedule must fall between 2000-01-01 and 8999-12-31 once in UTC"


def _details(body) -> dict[str, str]:
    return {d["field"]: d["reason"] for d in body["error"]["details"]}


@pytest.mark.parametrize(
    ("name", "value", "extra"),
    [
        ("schedule", "9999-12-31T23:59:59-14:00", {}),
        ("scheduled_at", "9999-12-31T23:59:59-14:00", {}),
        ("scheduled_at", "0001-01-01T00:00:00+14:00", {}),
        ("scheduled_at", "0001-01-01T00:00:00", {}),  # in the account's zone, Asia/Kolkata
        ("schedule", "9999-12-31T23:00:00", {"timezone": "Pacific/Kiritimati"}),
        ("scheduled_at", "1999-12-31T23:59:59Z", {}),
        ("scheduled_at", "9000-01-01T00:00:00Z", {}),
        ("scheduled_at", "2000-01-01T05:00:00", {}),  # 1999-12-31T23:30Z in Asia/Kolkata
        ("scheduled_at", "8999-12-31T20:00:00", {"timezone": "contact_local"}),  # past 9000 west of UTC
    ],
)
async def test_a_schedule_outside_the_years_2000_to_8999_is_a_422_naming_the_field_sent(
    http, system, account, agent_id, db, name, value, extra
):
    # Given a campaign scheduled at (or past) the calendar's ends, under either of its names
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, **{name: value}, **extra)
    )
    # Then it is refused, naming the field as sent, and nothing is written
    assert status == 422, body
    assert set(_details(body)) == {name}, body
    assert _RANGE in _details(body)[name]
    assert await _campaigns(db, account) == 0
    # and inside `config` the same
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, config={name: value, **extra}),
    )
    assert status == 422, body
    assert set(_details(body)) == {name}, body


async def test_a_patch_to_a_schedule_out_of_range_is_a_422_and_changes_nothing(http, system, account, agent_id):
    status, draft = await call(
        http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, schedule="2030-01-01T09:00:00Z")
    )
    assert status == 201, draft
    url = f"{system.api_url}/campaigns/{draft['id']}"
    for name, value in (("scheduled_at", "9999-12-31T23:59:59-14:00"), ("schedule", "0001-01-01T00:00:00")):
        status, body = await call(http, "PATCH", url, account.headers, {name: value})
        assert status == 422, body
        assert set(_details(body)) == {name}, body
        assert _RANGE in _details(body)[name]
    _status, campaign = await call(http, "GET", url, account.headers)
    assert campaign["scheduled_at"] == "2030-01-01T09:00:00Z"


@pytest.mark.parametrize(
    ("value", "extra"),
    [
        ("2000-01-01T00:00:00Z", {}),
        ("8999-12-31T23:59:59Z", {}),
        ("8999-12-31T09:00:00", {"timezone": "contact_local"}),
        ("8999-12-31T09:00:00", {"timezone": "Pacific/Kiritimati", "recurrence": {"frequency": "monthly"}}),
    ],
)
async def test_a_schedule_at_the_bounds_is_accepted_and_planned(http, system, account, agent_id, value, extra):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, scheduled_at=value, **extra)
    )
    assert status == 201, body
    status, report = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/dry-run", account.headers)
    assert status == 200, report


async def test_a_deliveries_cursor_not_from_this_api_is_a_422_on_cursor(http, system, account, agent_id):
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, draft
    url = f"{system.api_url}/campaigns/{draft['id']}/deliveries"
    for cursor in ("zzz", "dlv_", "dlv_zzzzzzzzzzzzzzzz", "ct_0123456789abcdef", "dlv_0123456789abcdef0"):
        status, body = await call(http, "GET", f"{url}?cursor={cursor}", account.headers)
        assert status == 422, (cursor, body)
        assert body["error"]["details"] == [{"field": "cursor", "reason": "not a cursor from this API"}]
    status, body = await call(http, "GET", f"{url}?cursor=dlv_0123456789abcdef", account.headers)
    assert status == 200, body


async def test_run_0_is_a_422_on_run_as_any_other_non_run_number(http, system, account, agent_id):
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, draft
    url = f"{system.api_url}/campaigns/{draft['id']}"
    for path in ("/results", "/deliveries.csv"):
        for run in ("0", "00", "-1", "abc"):
            status, body = await call(http, "GET", f"{url}{path}?run={run}", account.headers)
            assert status == 422, (path, run, body)
            assert body["error"]["details"][0]["field"] == "run"
        status, body = await call(http, "GET", f"{url}{path}?run=7", account.headers)
        assert status == 404, (path, body)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": "2"}, "max_concurrent"),
        ({"max_retries": False}, "max_retries"),
        ({"config": {"max_retries": True}}, "config.max_retries"),
        ({"retry_interval": True}, "retry_interval"),
        ({"template_id": True}, "template_id"),
        ({"sending_window": {"start_hour": True}}, "sending_window.start_hour"),
        ({"circuit_breaker": {"min_sends": True}}, "circuit_breaker.min_sends"),
        ({"circuit_breaker": {"failure_rate": True}}, "circuit_breaker.failure_rate"),
        ({"circuit_breaker": {"enabled": "yes"}}, "circuit_breaker.enabled"),
    ],
)
async def test_a_campaign_number_or_boolean_of_the_wrong_kind_is_a_422_naming_it(
    http, system, account, agent_id, db, fields, field
):
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, **fields))
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {field}, body
    assert await _campaigns(db, account) == 0


async def test_the_documented_conveniences_stay(http, system, account, agent_id):
    for fields in (
        {"retry_interval": "5m", "max_concurrent": 3, "circuit_breaker": True},
        {"circuit_breaker": False, "config": {"retry_interval": 30}},
        {"circuit_breaker": {"failure_rate": 1, "min_sends": 10, "enabled": True}},
    ):
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, **fields)
        )
        assert status == 201, (fields, body)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"quiet_hours": "yes"}, "quiet_hours"),
        ({"quiet_hours": 0}, "quiet_hours"),
        ({"quiet_hours": None}, "quiet_hours"),
        ({"default_timezone": None}, "default_timezone"),
    ],
)
async def test_an_account_patch_of_the_wrong_kind_or_null_is_a_422_and_changes_nothing(
    http, system, account, patch, field
):
    status, body = await call(http, "PATCH", system.api_url + "/account", account.headers, {"quiet_hours": False})
    assert status == 200, body
    status, body = await call(http, "PATCH", system.api_url + "/account", account.headers, patch)
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == [field], body
    _status, now = await call(http, "GET", system.api_url + "/account", account.headers)
    assert now["quiet_hours"] is False
    assert now["default_timezone"] == "Asia/Kolkata"


async def test_a_contact_opt_out_must_be_a_boolean(http, system, account):
    status, body = await call(
        http, "POST", system.api_url + "/contacts", account.headers, {"phone": new_phone(), "opted_out": {"sms": "yes"}}
    )
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["opted_out.sms"], body
