"""A strict API: an unknown field is a 422 naming it (with the name meant, when close), every bad
field of a request is reported in one answer with nothing written, a schedule already past is
accepted with a warning, and results carry numeric twins for machines."""

from __future__ import annotations

import pytest

from tests.e2e.test_email import new_email
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e


@pytest.fixture
async def agent_id(http, system, account):
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Ava"})
    assert status == 201, agent
    return agent["id"]


def _sms(agent_id: str, **fields):
    return {"name": "Strict", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()],
            "message_template": "Hi {{first_name}}", **fields}


async def _campaigns(db, account) -> int:
    return await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id)


async def test_a_misspelt_field_is_a_422_naming_it_and_the_name_meant(http, system, account, agent_id, db):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, scheduledAt="2030-01-01T09:00:00Z"),
    )
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "scheduledAt", "reason": "unknown field (did you mean `scheduled_at`?)"}
    ]
    # inside config and nested objects too, and nothing was written
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, config={"max_concurent": 3}, sending_window={"start_hour": 9, "end": 17}),
    )
    assert status == 422, body
    assert {(d["field"], d["reason"]) for d in body["error"]["details"]} == {
        ("config.max_concurent", "unknown field (did you mean `max_concurrent`?)"),
        ("sending_window.end", "unknown field"),
    }
    assert await _campaigns(db, account) == 0


async def test_the_seeds_synonyms_stay_accepted(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Seed", "agent_id": agent_id, "type": "sms", "contacts": [new_phone()],
         "message": "Hi", "schedule": "2030-01-01T09:00:00Z", "caller_id": None,
         "config": {"max_concurrent": 2, "retry_interval": "5m"}},
    )
    assert status == 201, body
    assert body["warnings"] == []


async def test_every_bad_field_is_reported_in_one_answer(http, system, account, agent_id, db):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, max_concurrent="many", timezone="Mars/Olympus", contacts=["not a phone"], colour="red"),
    )
    assert status == 422, body
    fields = {d["field"] for d in body["error"]["details"]}
    # a type error, an unknown field and the domain checks (zone, phone) side by side
    assert {"max_concurrent", "colour", "timezone", "contacts[0]"} <= fields, body
    assert await _campaigns(db, account) == 0
    # a change too: its type errors and the checks beyond types side by side, nothing changed
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, draft
    status, body = await call(
        http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
        {"max_concurrent": "many", "timezone": "Mars/Olympus", "schedule": "soon", "max_retrys": 1},
    )
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {
        "max_concurrent", "timezone", "schedule", "max_retrys"  # (`schedule`: the name sent)
    }, body
    # (contacts are checked for the campaign's channel, which a change without one does not say)
    status, mail = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Mail", "agent_id": agent_id, "type": "email", "contacts": [new_email()], "subject": "S",
         "message_template": "Hi"},
    )
    assert status == 201, mail
    status, body = await call(
        http, "PATCH", f"{system.api_url}/campaigns/{mail['id']}", account.headers,
        {"max_concurrent": "many", "contacts": [new_email()]},
    )
    assert (status, [d["field"] for d in body["error"]["details"]]) == (422, ["max_concurrent"]), body
    row = await db.fetchrow("SELECT timezone, max_concurrent FROM campaigns WHERE id = $1", draft["id"])
    assert (row["timezone"], row["max_concurrent"]) == (draft["timezone"], draft["max_concurrent"])


async def test_other_bodies_refuse_unknown_fields_too(http, system, account, agent_id):
    cases = [
        ("POST", "/agents", {"name": "Bo", "instructions": "x", "personality": "kind"}, "personality"),
        ("PATCH", f"/agents/{agent_id}", {"nam": "Bo"}, "nam"),
        ("POST", "/templates", {"name": "T", "channel": "sms", "body": "Hi", "bodyy": "x"}, "bodyy"),
        ("POST", "/contact-groups", {"name": "G", "colour": "red"}, "colour"),
        ("POST", "/senders", {"phone": "+14155550100", "label": "x"}, "label"),
        ("PATCH", "/account", {"default_timezone": "UTC", "quiet": True}, "quiet"),
    ]
    for method, path, payload, field in cases:
        status, body = await call(http, method, system.api_url + path, account.headers, payload)
        assert status == 422, (path, body)
        assert field in {d["field"] for d in body["error"]["details"]}, (path, body)


async def test_a_schedule_already_past_is_accepted_with_a_warning(http, system, account, agent_id):
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, scheduled_at="2020-01-01T09:00:00Z"),
    )
    assert status == 201, body
    assert [w["field"] for w in body["warnings"]] == ["scheduled_at"]
    assert "sent at launch" in body["warnings"][0]["message"]
    url = f"{system.api_url}/campaigns/{body['id']}"
    status, body = await call(http, "PATCH", url, account.headers, {"scheduled_at": "2031-01-01T09:00:00"})
    assert status == 200, body
    assert body["warnings"] == []
    status, body = await call(
        http, "PATCH", url, account.headers, {"scheduled_at": "2021-06-01T09:00:00", "timezone": "Asia/Tokyo"}
    )
    assert status == 200, body
    assert "in Asia/Tokyo" in body["warnings"][0]["message"]
    # named as the request names it (the seed's `schedule`), the time written as the API writes times
    status, body = await call(http, "PATCH", url, account.headers, {"schedule": "2021-06-01T11:00:00+02:00"})
    assert status == 200, body
    assert body["warnings"] == [{"field": "schedule",
                                 "message": "2021-06-01T09:00:00Z is already past: those contacts are sent at launch"}]
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              _sms(agent_id, schedule="2020-01-01T09:00:00", timezone="UTC"))
    assert status == 201, body
    assert body["warnings"] == [{"field": "schedule", "message": "2020-01-01T09:00:00 is already past in UTC: "
                                                                 "those contacts are sent at launch"}]


async def test_results_carry_numeric_twins(http, system, account, agent_id):
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, body
    status, results = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
    assert status == 200, results
    assert (results["reply_rate"], results["reply_rate_value"]) == ("0.0%", 0.0)
    assert (results["average_response_time"], results["average_response_time_seconds"]) == (None, None)
    assert results["undelivered"] == 0


async def test_the_fields_other_pieces_added_are_strict_too(http, system, account, agent_id, db):
    # the circuit breaker's thresholds, a sender's rate, a webhook endpoint: a typo is named
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, circuit_breaker={"failure_rat": 0.5}),
    )
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "circuit_breaker.failure_rat", "reason": "unknown field (did you mean `failure_rate`?)"}
    ]
    assert await _campaigns(db, account) == 0
    # the objects checked by hand (a call's voice settings, a recurrence) name theirs as well, in one answer
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {**_sms(agent_id, type="voice", voice={"languge": "en-GB", "max_duration": 60},
                recurrence={"frequency": "weekly", "weekday": ["mon"]}), "colour": "red"},
    )
    assert status == 422, body
    assert sorted((d["field"], d["reason"]) for d in body["error"]["details"]) == [
        ("colour", "unknown field"),
        ("recurrence.weekday", "unknown field (did you mean `weekdays`?)"),
        ("voice.languge", "unknown field (did you mean `language`?)"),
    ]
    assert await _campaigns(db, account) == 0
    cases = [
        ("POST", "/senders", {"phone": new_phone(), "max_per_sec": 2}, "max_per_sec", "max_per_second"),
        ("PATCH", "/senders/nobody@example.com", {"max_per_second": 1, "burst": 2}, "burst", None),
        ("POST", "/webhook-endpoints", {"url": "https://example.com/h", "events": ["*"], "event": "x"},
         "event", "events"),
    ]
    for method, path, payload, name, meant in cases:
        status, body = await call(http, method, system.api_url + path, account.headers, payload)
        assert status == 422, (path, body)
        reason = "unknown field" + (f" (did you mean `{meant}`?)" if meant else "")
        assert {"field": name, "reason": reason} in body["error"]["details"], (path, body)
    assert await db.fetchval("SELECT count(*) FROM webhook_endpoints WHERE account_id = $1", account.id) == 0


async def test_the_openapi_document_says_so(http, system):
    status, document = await call(http, "GET", system.api_url + "/openapi.json")
    assert status == 200
    schemas = document["components"]["schemas"]
    assert schemas["CampaignCreate"]["additionalProperties"] is False
    assert schemas["CircuitBreakerIn"]["additionalProperties"] is False
    assert "unknown field" in document["info"]["description"]
    created = document["paths"]["/campaigns"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert "warnings" in created["properties"]
    results = document["paths"]["/campaigns/{id}/results"]["get"]["responses"]["200"]["content"]["application/json"]
    assert {"reply_rate_value", "average_response_time_seconds", "undelivered"} <= set(results["schema"]["properties"])


async def _raw(http, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    """A POST of `body` as it is (no JSON encoding of ours): (status, parsed answer)."""
    async with http.post(url, data=body, headers={**headers, "Content-Type": "application/json"}) as response:
        return response.status, await response.json(content_type=None)


async def test_a_body_nested_too_deeply_is_a_422_not_a_crash(http, system, account, agent_id, db):
    phone = new_phone()
    too_deep = [
        b'{"phone": "%s", "m": %s%s}' % (phone.encode(), b"[" * 1000, b"]" * 1000),  # deeper than Python decodes
        b'{"phone": "%s", "m": %s%s}' % (phone.encode(), b"[" * 40, b"]" * 40),  # decoded, then refused
    ]
    deep = {"field": "body", "reason": "nests arrays and objects more than 32 levels deep"}
    for body in too_deep:
        for headers in (account.headers, {**account.headers, "Idempotency-Key": new_phone()}):
            status, answer = await _raw(http, system.api_url + "/contacts", headers, body)
            assert status == 422, answer
            assert answer["error"]["message"] == "the body nests too deeply"
            assert answer["error"]["details"] == [deep]
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0
    # a campaign's config too
    config = b'{"sending_window": %s1%s}' % (b'{"a": ' * 900, b"}" * 900)
    body = b'{"name": "Deep", "agent_id": "%s", "type": "sms", "config": %s}' % (agent_id.encode(), config)
    status, answer = await _raw(http, system.api_url + "/campaigns", account.headers, body)
    assert (status, answer["error"]["details"]) == (422, [deep]), answer
    assert await _campaigns(db, account) == 0
    # 31 levels below the body are fine
    nested: list = []
    for _ in range(30):
        nested = [nested]
    status, answer = await call(
        http, "POST", system.api_url + "/contacts", account.headers, {"phone": phone, "m": nested}
    )
    assert status == 201, answer


async def test_text_that_is_not_unicode_is_a_422_naming_the_field(http, system, account, agent_id, db):
    lone = "is not valid Unicode text (a lone surrogate, \\ud800)"
    cases = [
        ("/contacts", {"phone": new_phone(), "first_name": "\ud800"}, [("first_name", lone)]),
        ("/contacts", {"phone": new_phone(), "metadata": {"k": ["ok", "a\udc00"]}},
         [("metadata.k[1]", lone.replace("ud800", "udc00"))]),
        ("/templates", {"name": "T", "channel": "sms", "body": "\ud800"}, [("body", lone)]),
        ("/contact-groups", {"name": "\ud800"}, [("name", lone)]),
        ("/campaigns", _sms(agent_id, name="\ud800", contacts=[{"phone": new_phone(), "last_name": "\ud800"}]),
         [("name", lone), ("contacts[0].last_name", lone)]),
        ("/agents", {"name": "Bo", "settings": {"\ud800": 1}}, [("settings.\ud800", "its name " + lone)]),
    ]
    for path, payload, expected in cases:
        status, body = await call(http, "POST", system.api_url + path, account.headers, payload)
        assert status == 422, (path, body)
        assert body["error"]["message"] == "text must be valid Unicode, without NUL characters", body
        assert [(d["field"], d["reason"]) for d in body["error"]["details"]] == expected, (path, body)
    # a surrogate pair is one character, as JSON means it
    status, body = await call(
        http, "POST", system.api_url + "/contacts", account.headers, {"phone": new_phone(), "first_name": "\U0001f600"}
    )
    assert (status, body["first_name"]) == (201, "\U0001f600"), body
    written = await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id)
    assert written == 1
    assert await _campaigns(db, account) == 0
    assert await db.fetchval("SELECT count(*) FROM templates WHERE account_id = $1", account.id) == 0


async def test_a_field_and_its_synonym_sent_together_count_once_when_they_agree(http, system, account, agent_id, db):
    # the seed's API reference lists `type` and `channel` side by side: a client may send both
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, channel="sms", message="Hi {{first_name}}", schedule="2030-01-01T09:00:00Z",
             scheduled_at="2030-01-01T09:00:00+00:00", config={"time_limit": 60, "call_duration_limit": 60},
             voice={"max_duration": 60, "call_duration_limit": "60"},
             recurrence={"type": "daily", "frequency": "Daily"}),
    )
    assert status == 201, body
    assert (body["type"], body["message_template"]) == ("sms", "Hi {{first_name}}")
    status, template = await call(
        http, "POST", system.api_url + "/templates", account.headers,
        {"name": "T", "type": "sms", "channel": "sms", "body": "Hi", "text": "Hi"},
    )
    assert status == 201, template
    assert await _campaigns(db, account) == 1


async def test_a_field_and_its_synonym_that_disagree_are_a_422_naming_both(http, system, account, agent_id, db):
    def disagree(names: str, values: str) -> str:
        return f"{names} are one setting and disagree ({values}): send one of them, or the same value"

    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {**_sms(agent_id, channel="email", message="Bye", caller_id="+14155550100", from_number="+14155550199",
                config={"schedule": "2030-01-01T09:00:00", "scheduled_at": "2030-01-02T09:00:00"},
                recurrence={"type": "daily", "frequency": "weekly"}, max_concurrent=0)},
    )
    assert status == 422, body
    assert sorted((d["field"], d["reason"]) for d in body["error"]["details"]) == sorted([
        ("type", disagree("`type` and `channel`", "'sms', 'email'")),
        ("channel", disagree("`type` and `channel`", "'sms', 'email'")),
        ("message_template", disagree("`message_template` and `message`", "'Hi {{first_name}}', 'Bye'")),
        ("message", disagree("`message_template` and `message`", "'Hi {{first_name}}', 'Bye'")),
        ("caller_id", disagree("`caller_id` and `from_number`", "'+14155550100', '+14155550199'")),
        ("from_number", disagree("`caller_id` and `from_number`", "'+14155550100', '+14155550199'")),
        ("config.schedule", disagree("`schedule` and `scheduled_at`", "'2030-01-01T09:00:00', '2030-01-02T09:00:00'")),
        ("config.scheduled_at",
         disagree("`schedule` and `scheduled_at`", "'2030-01-01T09:00:00', '2030-01-02T09:00:00'")),
        ("recurrence.type", disagree("`type` and `frequency`", "'daily', 'weekly'")),
        ("recurrence.frequency", disagree("`type` and `frequency`", "'daily', 'weekly'")),
        ("max_concurrent", "must be at least 1"),  # the other bad fields beside them
    ]), body
    assert await _campaigns(db, account) == 0
    # a change and a template alike
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, draft
    status, body = await call(
        http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
        {"scheduled_at": "2030-01-01T09:00:00Z", "schedule": "2031-01-01T09:00:00Z"},
    )
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {"scheduled_at", "schedule"}, body
    status, body = await call(
        http, "POST", system.api_url + "/templates", account.headers,
        {"name": "T", "type": "sms", "channel": "email", "body": "Hi"},
    )
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {"type", "channel"}, body
    assert await db.fetchval("SELECT count(*) FROM templates WHERE account_id = $1", account.id) == 0


async def test_a_change_lists_every_bad_field_as_a_create_does(http, system, account, agent_id, db):
    bad = {"contacts": ["+1999"], "max_concurrent": 0}
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id, **bad))
    assert status == 422, body
    created = sorted((d["field"], d["reason"]) for d in body["error"]["details"])
    assert [field for field, _ in created] == ["contacts[0]", "max_concurrent"], body
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, _sms(agent_id))
    assert status == 201, draft
    url = f"{system.api_url}/campaigns/{draft['id']}"
    # the contacts are checked for the draft's channel (sms), which the change leaves
    status, body = await call(http, "PATCH", url, account.headers, bad)
    assert status == 422, body
    assert sorted((d["field"], d["reason"]) for d in body["error"]["details"]) == created
    row = await db.fetchrow("SELECT max_concurrent, total_contacts FROM campaigns WHERE id = $1", draft["id"])
    assert (row["max_concurrent"], row["total_contacts"]) == (draft["max_concurrent"], 1)
    # a change that gives the channel has its contacts checked for that one
    status, body = await call(http, "PATCH", url, account.headers, {**bad, "type": "email"})
    assert status == 422, body
    assert sorted(d["field"] for d in body["error"]["details"]) == ["contacts[0]", "max_concurrent"], body
    assert {"field": "contacts[0]", "reason": "'+1999' is not a valid email address"} in body["error"]["details"]
    # no such campaign: a 404, whatever the body
    status, body = await call(http, "PATCH", system.api_url + "/campaigns/cmp_nope", account.headers, bad)
    assert status == 404, body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/contact-groups", {}),
        ("/agents", {}),
        ("/templates", {"channel": "sms", "body": "Hi"}),
        ("/campaigns", {"type": "sms", "contacts": ["+14155550100"], "message_template": "Hi"}),
    ],
    ids=["group", "agent", "template", "campaign"],
)
async def test_a_name_of_spaces_is_a_422_and_a_name_is_kept_without_the_spaces_around_it(
    http, system, account, agent_id, path, body
):
    body = {**body, **({"agent_id": agent_id} if path == "/campaigns" else {})}
    status, error = await call(http, "POST", system.api_url + path, account.headers, {**body, "name": "   "})
    assert status == 422, error
    assert [d["field"] for d in error["error"]["details"]] == ["name"], error
    status, made = await call(http, "POST", system.api_url + path, account.headers, {**body, "name": "  Spring  "})
    assert (status, made["name"]) == (201, "Spring"), made
    status, error = await call(http, "PATCH", f"{system.api_url}{path}/{made['id']}", account.headers, {"name": " "})
    assert (status, [d["field"] for d in error["error"]["details"]]) == (422, ["name"]), error


async def test_every_bad_field_inside_an_object_is_reported_too(http, system, account, agent_id, db):
    # a recurrence with four bad fields, a window with bad hours and a bad day: each is named
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        _sms(agent_id, recurrence={"frequency": "weekly", "interval": 0, "weekdays": ["funday"], "month_day": 32,
                                   "count": 0},
             sending_window={"start_hour": 25, "excluded_days": ["Caturday"]}),
    )
    assert status == 422, body
    fields = {d["field"]: d["reason"] for d in body["error"]["details"]}
    assert set(fields) == {"recurrence.interval", "recurrence.weekdays", "recurrence.month_day", "recurrence.count",
                           "sending_window.start_hour", "sending_window.excluded_days"}, fields
    assert fields["sending_window.excluded_days"] == "unknown day 'Caturday'"
    assert await _campaigns(db, account) == 0
    # the account's settings: a null, a zone that is none, and a field it does not have
    status, body = await call(http, "PATCH", system.api_url + "/account", account.headers,
                              {"quiet_hours": None, "default_timezone": "localtime", "balance": "1000"})
    assert status == 422, body
    fields = {d["field"]: d["reason"] for d in body["error"]["details"]}
    assert set(fields) == {"quiet_hours", "default_timezone", "balance"}, fields
    assert fields["default_timezone"] == "not an IANA time zone name"
    assert not fields["quiet_hours"].startswith("Value error")
    # a webhook endpoint with a URL of another scheme and no events
    status, body = await call(http, "POST", system.api_url + "/webhook-endpoints", account.headers,
                              {"url": "ftp://x/y", "events": []})
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {"url", "events"}, body


async def test_an_unknown_query_parameter_is_a_422_naming_it_and_those_taken(http, system, account):
    # `?q=` is the dashboard's search, not the API's: it listed every contact, unfiltered
    status, body = await call(http, "GET", system.api_url + "/contacts?q=Ann&limit=5", account.headers)
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "q", "reason": "unknown query parameter (one of country, cursor, email, group_id, limit, opted_out,"
                                 " phone)"}]
    status, body = await call(http, "GET", system.api_url + "/campaigns/camp_0000000000000000?expand=1",
                              account.headers)
    assert (status, body["error"]["details"]) == (422, [
        {"field": "expand", "reason": "unknown query parameter (this path takes none)"}])
    # those it takes still work
    status, body = await call(http, "GET", system.api_url + "/campaigns?status=draft&limit=1", account.headers)
    assert status == 200, body
