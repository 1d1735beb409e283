"""The API's contract: auth, validation, not-found, state conflicts, tenant isolation."""

from __future__ import annotations

import base64
import re

import pytest

from services.api.app import MAX_BODY
from tests.conftest import make_account
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e


@pytest.fixture
async def agent_id(http, system, account) -> str:
    status, body = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Ava"})
    assert status == 201, body
    return body["id"]


async def test_missing_or_wrong_api_key_is_401(http, system):
    for headers in ({}, {"Authorization": "Bearer sk_wrong"}, {"Authorization": "Basic abc"}):
        status, body = await call(http, "GET", system.api_url + "/campaigns", headers)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        assert body["error"]["message"]


async def test_unknown_agent_is_404(http, system, account):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "x", "agent_id": "ag_missing", "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
    )
    assert status == 404
    assert body["error"]["details"][0]["field"] == "agent_id"


async def test_each_invalid_contact_is_named_with_its_index(http, system, account, agent_id, db):
    before = await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id)
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Follow-up Campaign", "agent_id": agent_id, "type": "voice",
         "contacts": [new_phone(), "+1234567890", "not a phone", "+0987654321"],
         "message_template": "Hi {{name}}", "schedule": "2026-03-10T09:00:00Z", "max_concurrent": 5},
    )
    assert status == 422
    fields = [d["field"] for d in body["error"]["details"]]
    assert fields == ["contacts[1]", "contacts[2]", "contacts[3]"]
    assert "+1234567890" in body["error"]["details"][0]["reason"]
    # nothing half-written
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == before
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0


async def test_an_email_campaigns_bad_address_is_called_an_email_address(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "E", "agent_id": agent_id, "type": "email", "subject": "S", "message_template": "hi",
         "contacts": ["ann@example.com", "not-an-email"]},
    )
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "contacts[1]", "reason": "'not-an-email' is not a valid email address"}
    ]


async def test_every_bad_field_is_listed(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "", "agent_id": agent_id, "type": "fax", "contacts": [new_phone()],
         "max_concurrent": 0, "timezone": "Mars/Olympus"},
    )
    assert status == 422
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"name", "type", "max_concurrent"} <= fields  # named as the caller sent it
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "tz", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()],
         "message_template": "Hi {{ first_name", "timezone": "Mars/Olympus",
         "sending_window": {"start_hour": 9, "end_hour": 17, "excluded_days": ["Funday"]}},
    )
    assert status == 422
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"timezone", "message_template", "sending_window.excluded_days"} <= fields


async def test_not_json_is_400(http, system, account):
    async with http.post(system.api_url + "/campaigns", headers=account.headers, data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


async def test_seed_shapes_are_accepted(http, system, account, agent_id):
    phones = [new_phone(), new_phone()]
    shapes = [
        # the API reference's body
        {"name": "Follow-up Campaign", "agent_id": agent_id, "type": "voice", "contacts": phones,
         "message_template": "Hi {{name}}, this is a follow-up about {{topic}}.",
         "schedule": "2026-03-10T09:00:00Z", "max_concurrent": 5},
        # the guide's time-zone-aware body, with inline contacts instead of a group
        {"name": "Morning Check-in", "type": "sms", "agent_id": agent_id, "contacts": phones,
         "message_template": "Good morning {{first_name}}! How are you feeling today?",
         "scheduled_at": "2026-03-10T09:00:00", "timezone": "contact_local",
         "sending_window": {"start_hour": 9, "end_hour": 17, "excluded_days": ["Saturday", "Sunday"]}},
        # the reference's schema names: channel, description, config, status
        {"name": "Configured", "agent_id": agent_id, "channel": "sms", "description": "d",
         "config": {"contacts": phones, "message_template": "Hi", "max_retries": 3, "retry_interval": "5m",
                    "timezone": "America/New_York"}},
    ]
    for shape in shapes:
        status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, shape)
        assert status == 201, (shape["name"], body)
        assert body["status"] == "draft"
        assert body["total_contacts"] == 2
    assert body["max_retries"] == 3
    assert body["retry_interval"] == 300
    assert body["timezone"] == "America/New_York"
    assert body["description"] == "d"


async def test_unknown_group_is_404(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Appointment Reminders", "type": "sms", "agent_id": agent_id, "contact_group_id": "group_xyz789",
         "message_template": "Hi {{first_name}}", "scheduled_at": "2026-03-10T09:00:00Z",
         "timezone": "America/New_York"},
    )
    assert status == 404
    assert body["error"]["details"][0]["field"] == "contact_group_id"  # the name it was given under


async def test_actions_that_do_not_fit_the_state_are_409(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "c", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi",
         "schedule": "2030-01-01T09:00:00Z"},
    )
    url = f"{system.api_url}/campaigns/{body['id']}"
    for action in ("pause", "resume"):
        status, error = await call(http, "POST", f"{url}/{action}", account.headers)
        assert status == 409, error
        assert "draft" in error["error"]["message"]
    status, launched = await call(http, "POST", url + "/launch", account.headers)
    assert (status, launched["status"]) == (200, "scheduled")
    status, error = await call(http, "POST", url + "/launch", account.headers)
    assert status == 409
    status, cancelled = await call(http, "POST", url + "/cancel", account.headers)
    assert (status, cancelled["status"]) == (200, "cancelled")
    status, error = await call(http, "POST", url + "/resume", account.headers)
    assert status == 409
    assert "cancelled" in error["error"]["message"]


async def test_launch_beyond_the_balance_is_402(http, system, db):
    poor = await make_account(db, balance="0.001")
    status, agent = await call(http, "POST", system.api_url + "/agents", poor.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", poor.headers,
        {"name": "c", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone(), new_phone()],
         "message_template": "hi"},
    )
    status, error = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/launch", poor.headers)
    assert status == 402
    assert error["error"]["balance"] == "0.0010"
    assert float(error["error"]["estimate"]) > 0.001
    status, still = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}", poor.headers)
    assert still["status"] == "draft"


async def test_another_accounts_objects_are_404(http, system, account, agent_id, db):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "mine", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
    )
    other = await make_account(db)
    for path in (f"/campaigns/{body['id']}", f"/campaigns/{body['id']}/results", f"/agents/{agent_id}"):
        status, _error = await call(http, "GET", system.api_url + path, other.headers)
        assert status == 404, path
    status, _error = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/launch", other.headers)
    assert status == 404
    status, page = await call(http, "GET", system.api_url + "/campaigns", other.headers)
    assert page["data"] == []
    # and B cannot run a campaign with A's agent
    status, _error = await call(
        http, "POST", system.api_url + "/campaigns", other.headers,
        {"name": "theirs", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
    )
    assert status == 404


async def test_list_pages_with_a_cursor(http, system, account, agent_id):
    for i in range(5):
        await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": f"c{i}", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
        )
    seen, cursor = [], None
    while True:
        url = system.api_url + "/campaigns?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await call(http, "GET", url, account.headers)
        assert status == 200
        seen += [c["name"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["c4", "c3", "c2", "c1", "c0"]
    status, page = await call(http, "GET", system.api_url + "/campaigns?status=draft&channel=email", account.headers)
    assert page["data"] == []


async def test_a_crafted_cursor_is_a_422_not_a_500(http, system, account, agent_id):
    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode()

    _status, campaign = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "c", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
    )
    lists = ("/campaigns", "/contacts", "/contact-groups", "/templates", "/agents", "/webhook-endpoints", "/senders",
             "/api-keys")
    # times UTC cannot hold (PostgreSQL's DataError), a time without its offset, positions beyond an integer
    cases = [(path, cursor) for path in lists for cursor in (
        b64("0001-01-01T00:00:00+14:00|a"), b64("9999-12-31T23:59:59-14:00|a"), b64("2026-01-01T00:00:00|a"))]
    cases += [(f"/campaigns/{campaign['id']}/runs", b64("at|99999999999999999999")),
              (f"/campaigns/{campaign['id']}/runs", b64("at|²"))]
    for path, cursor in cases:
        status, body = await call(http, "GET", f"{system.api_url}{path}?cursor={cursor}", account.headers)
        assert (status, body["error"]["details"][0]["field"]) == (422, "cursor"), (path, cursor, body)


async def test_health_and_metrics(http, system):
    for base in (system.api_url, system.tracker_url):
        status, body = await call(http, "GET", base + "/healthz")
        assert status == 200
        assert body["status"] == "ok"
        async with http.get(base + "/metrics") as response:
            assert response.status == 200
            assert "campaigns_http_requests_total" in await response.text()


async def test_a_voice_campaign_keeps_its_voice_settings(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "v", "agent_id": agent_id, "type": "voice", "contacts": [new_phone()],
         "opening_message": "Hello!", "call_duration_limit": 120},
    )
    assert status == 201, body
    assert body["voice"] == {"opening_message": "Hello!", "call_duration_limit": 120}


async def test_a_call_duration_limit_takes_durations_as_retry_interval_does(http, system, account, agent_id, db):
    def voice(**fields):
        return {"name": "v", "agent_id": agent_id, "type": "voice", "contacts": [new_phone()],
                "opening_message": "Hello!", **fields}

    # "5m" is 300 seconds (kept as seconds), at the top level, in config and in the voice object
    for body in (voice(call_duration_limit="5m"), voice(config={"call_duration_limit": "5m"}),
                 voice(voice={"call_duration_limit": "300s"})):
        status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, body)
        assert status == 201, created
        assert created["voice"]["call_duration_limit"] == 300, created
        stored = await db.fetchval("SELECT voice->>'call_duration_limit' FROM campaigns WHERE id = $1", created["id"])
        assert stored == "300"
    # bounded as before: 10 s to 4 h, whatever the form
    for limit in ("5h", 5, "soon"):
        status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                   voice(call_duration_limit=limit))
        assert status == 422, error
        assert [d["field"] for d in error["error"]["details"]] == ["call_duration_limit"], error
        reason = error["error"]["details"][0]["reason"]
        assert "10 to 14400" in reason or "not a duration" in reason, reason
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               voice(voice={"call_duration_limit": "1d"}))
    assert (status, [d["field"] for d in error["error"]["details"]]) == (422, ["voice.call_duration_limit"]), error
    # and a draft's limit can be patched the same way
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, voice())
    status, patched = await call(http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
                                 {"call_duration_limit": "2m"})
    assert status == 200, patched
    assert patched["voice"]["call_duration_limit"] == 120


async def test_agents_crud_and_their_settings_are_checked(http, system, account):
    url = system.api_url + "/agents"
    status, error = await call(http, "POST", url, account.headers, {"name": "Hook", "mode": "webhook"})
    assert status == 422
    assert error["error"]["details"][0]["field"] == "settings.url"
    status, error = await call(http, "POST", url, account.headers,
                               {"name": "L", "mode": "llm", "settings": {"base_url": "ftp://x", "model": "m"}})
    assert status == 422
    status, agent = await call(http, "POST", url, account.headers, {
        "name": "Riley", "instructions": "Be brief.", "opening_message": "Hi!", "voice": {"voice": "alice"},
        "mode": "rules", "settings": {"rules": [{"keyword": "YES", "reply": "Great"}]}})
    assert status == 201
    status, patched = await call(http, "PATCH", f"{url}/{agent['id']}", account.headers,
                                 {"mode": "webhook", "settings": {"url": "https://example.test/hook", "secret": "s3"}})
    assert status == 200
    assert patched["mode"] == "webhook"
    assert patched["settings"] == {"url": "https://example.test/hook", "secret": "[set]"}
    assert patched["instructions"] == "Be brief."
    status, page = await call(http, "GET", url, account.headers)
    assert agent["id"] in [a["id"] for a in page["data"]]
    status, _ = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                           {"name": "uses", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                            "message_template": "hi"})
    status, error = await call(http, "DELETE", f"{url}/{agent['id']}", account.headers)
    assert status == 409
    status, spare = await call(http, "POST", url, account.headers, {"name": "Spare"})
    status, _ = await call(http, "DELETE", f"{url}/{spare['id']}", account.headers)
    assert status == 204
    status, _ = await call(http, "GET", f"{url}/{spare['id']}", account.headers)
    assert status == 404


async def test_tenants_never_see_each_others_agents_templates_or_senders(
    http, system, account, agent_id, db, fake_twilio
):
    status, template = await call(http, "POST", system.api_url + "/templates", account.headers,
                                  {"name": "t", "channel": "sms", "body": "hi"})
    own = new_phone()
    fake_twilio.owned_numbers.add(own)
    status, _sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert status == 201
    other = await make_account(db)
    for method, path in (("GET", f"/agents/{agent_id}"), ("PATCH", f"/agents/{agent_id}"),
                         ("DELETE", f"/agents/{agent_id}"), ("GET", f"/templates/{template['id']}"),
                         ("PATCH", f"/templates/{template['id']}"), ("DELETE", f"/templates/{template['id']}"),
                         ("POST", f"/templates/{template['id']}/preview"), ("DELETE", f"/senders/{own}")):
        status, _ = await call(http, method, system.api_url + path, other.headers, {} if method != "GET" else None)
        assert status == 404, (method, path, status)
    for path in ("/agents", "/templates", "/senders"):
        status, page = await call(http, "GET", system.api_url + path, other.headers)
        assert page["data"] == [], path
    # B may not send from A's number, nor use A's template
    status, agent = await call(http, "POST", system.api_url + "/agents", other.headers, {"name": "B"})
    status, error = await call(http, "POST", system.api_url + "/campaigns", other.headers,
                               {"name": "x", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                                "message_template": "hi", "from_number": own})
    assert (status, error["error"]["details"][0]["field"]) == (422, "from_number")
    status, error = await call(http, "POST", system.api_url + "/campaigns", other.headers,
                               {"name": "x", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                                "template_id": template["id"]})
    assert status == 404


async def test_an_unknown_list_filter_is_422_naming_the_choices(http, system, account):
    for query, field in (("status=bogus", "status"), ("channel=fax", "channel"), ("type=fax", "type")):
        status, body = await call(http, "GET", f"{system.api_url}/campaigns?{query}", account.headers)
        assert status == 422, (query, body)
        assert body["error"]["details"][0]["field"] == field
    status, body = await call(http, "GET", f"{system.api_url}/campaigns?status=completed&type=sms", account.headers)
    assert status == 200, body


async def test_a_body_over_the_limit_is_413_naming_it(http, system, account, db):
    before = await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id)
    body = b'{"name": "' + b"x" * (MAX_BODY + 1) + b'"}'
    async with http.post(system.api_url + "/campaigns", data=body,
                         headers={**account.headers, "Content-Type": "application/json"}) as response:
        error = await response.json()
        assert response.status == 413, error
    assert error["error"]["code"] == "payload_too_large"
    assert error["error"]["details"] == [{"field": "body", "reason": f"Maximum request body size {MAX_BODY} exceeded."}]
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == before


async def test_a_nul_in_a_path_or_query_value_is_422_not_500(http, system, account):
    for method, path in (("GET", "/contacts/%00"), ("DELETE", "/contact-groups/%00"), ("GET", "/campaigns/%00"),
                         ("POST", "/campaigns/%00/dry-run"), ("GET", "/contacts?group_id=%00"),
                         ("GET", "/agents/ag_%00x")):
        async with http.request(method, system.api_url + path, headers=account.headers) as response:
            body = await response.json()
            assert response.status == 422, (path, body)
        assert body["error"]["details"][0]["field"] == "request"


async def test_an_opening_message_with_a_syntax_error_is_422_naming_the_line(http, system, account, agent_id):
    status, error = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "A", "opening_message": "Hi\n{{ first_name "})
    assert status == 422, error
    assert error["error"]["details"][0]["field"] == "opening_message"
    assert error["error"]["details"][0]["reason"].startswith("line 2:")
    status, error = await call(http, "PATCH", f"{system.api_url}/agents/{agent_id}", account.headers,
                               {"opening_message": "{% if %}"})
    assert (status, error["error"]["details"][0]["field"]) == (422, "opening_message")
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "c", "agent_id": agent_id, "contacts": [new_phone()],
                                "opening_message": "Hello {{ name"})
    assert (status, error["error"]["details"][0]["field"]) == (422, "opening_message")


async def test_the_accounts_amounts_have_four_decimals_even_when_nothing_is_reserved(http, system, account):
    status, body = await call(http, "GET", system.api_url + "/account", account.headers)
    assert status == 200, body
    assert body["reserved"] == "0.0000", body
    assert all(re.fullmatch(r"\d+\.\d{4}", amount) for amount in (body["balance"], *body["prices"].values())), body


async def test_a_filter_that_is_no_choice_is_a_422_on_every_list(http, system, account, agent_id):
    _status, campaign = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "c", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()], "message_template": "hi"},
    )
    for path, field in (("/templates?channel=fax", "channel"), ("/campaigns?channel=fax", "channel"),
                        (f"/campaigns/{campaign['id']}/results?run=abc", "run"),
                        (f"/campaigns/{campaign['id']}/results?run=-1", "run")):
        status, body = await call(http, "GET", system.api_url + path, account.headers)
        assert (status, body["error"]["details"][0]["field"]) == (422, field), (path, body)
    status, body = await call(http, "GET", system.api_url + "/templates?channel=sms", account.headers)
    assert status == 200, body
    results = f"{system.api_url}/campaigns/{campaign['id']}/results"
    status, body = await call(http, "GET", results + "?run=7", account.headers)
    assert status == 404, body  # a number, but no such run
