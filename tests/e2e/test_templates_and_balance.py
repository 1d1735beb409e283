"""Templates, sender identities, the account's balance: reserve at launch, charge per send, refund."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone, signed_in, wait_until

pytestmark = pytest.mark.e2e


async def _agent(http, system, account) -> str:
    _status, body = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    return body["id"]


async def test_template_lifecycle_and_errors(http, system, account):
    url = system.api_url + "/templates"
    status, created = await call(http, "POST", url, account.headers,
                                 {"name": "Reminder", "channel": "sms",
                                  "body": "Hi {{first_name}}, order {{order_number}}"})
    assert status == 201, created
    assert created["id"].startswith("tpl_")
    status, error = await call(http, "POST", url, account.headers,
                               {"name": "Broken", "channel": "sms", "body": "Hi\n{{ first_name "})
    assert status == 422
    assert error["error"]["details"][0]["field"] == "body"
    assert error["error"]["details"][0]["reason"].startswith("line 2:")
    status, error = await call(http, "POST", url, account.headers, {"name": "Mail", "channel": "email", "body": "x"})
    assert status == 422
    assert {d["field"] for d in error["error"]["details"]} == {"subject"}
    status, patched = await call(http, "PATCH", f"{url}/{created['id']}", account.headers, {"name": "Renamed"})
    assert (status, patched["name"], patched["body"]) == (200, "Renamed", created["body"])
    status, error = await call(http, "PATCH", f"{url}/{created['id']}", account.headers,
                               {"channel": "email", "name": "Never"})
    assert (status, error["error"]["details"][0]["field"]) == (422, "channel")
    status, same = await call(http, "PATCH", f"{url}/{created['id']}", account.headers, {"channel": "sms"})
    assert (status, same["name"], same["channel"]) == (200, "Renamed", "sms")
    status, page = await call(http, "GET", url + "?channel=sms", account.headers)
    assert [t["id"] for t in page["data"]] == [created["id"]]
    status, _ = await call(http, "DELETE", f"{url}/{created['id']}", account.headers)
    assert status == 204
    status, _ = await call(http, "GET", f"{url}/{created['id']}", account.headers)
    assert status == 404


async def test_preview_renders_for_a_contact_and_names_what_is_missing(http, system, account):
    status, tpl = await call(http, "POST", system.api_url + "/templates", account.headers,
                             {"name": "Trial", "channel": "email",
                              "subject": "{{first_name}}, your trial is ending soon",
                              "body": "Your trial of {{plan_name}} ends {{expiry_date}}.",
                              "html": "<p>Hi {{first_name}}</p>"})
    assert status == 201, tpl
    preview = f"{system.api_url}/templates/{tpl['id']}/preview"
    status, shown = await call(http, "POST", preview, account.headers,
                               {"contact": {"first_name": "<Ann>", "plan_name": "Pro", "expiry_date": "May 1"}})
    assert status == 200, shown
    assert shown["subject"] == "<Ann>, your trial is ending soon"
    assert shown["body"] == "Your trial of Pro ends May 1."
    assert shown["html"] == "<p>Hi &lt;Ann&gt;</p>"  # escaped in HTML
    assert shown["missing_variables"] == []
    status, shown = await call(http, "POST", preview, account.headers, {"contact": {"first_name": "Ann"}})
    # rendered even so, each missing variable shown as written
    assert shown["body"] == "Your trial of {{plan_name}} ends {{expiry_date}}."
    assert shown["subject"] == "Ann, your trial is ending soon"
    assert shown["missing_variables"] == ["expiry_date", "plan_name"]  # every one, not only the first
    assert (shown["segments"], shown["error"]) == (None, None)  # (an email's): there, null


async def test_a_preview_lacking_a_variable_shows_it_and_carries_every_key(http, system, account):
    status, tpl = await call(http, "POST", system.api_url + "/templates", account.headers,
                             {"name": "Shipped", "channel": "sms",
                              "body": "Hi {{first_name}}, order #{{order_number}} shipped. {{agent_name}}"})
    assert status == 201, tpl
    preview = f"{system.api_url}/templates/{tpl['id']}/preview"
    contact = {"first_name": "Ann", "order_number": "1042"}
    status, shown = await call(http, "POST", preview, account.headers, {"contact": contact})
    assert status == 200, shown
    assert shown == {"body": "Hi Ann, order #1042 shipped. {{agent_name}}", "subject": None, "html": None,
                     "missing_variables": ["agent_name"], "segments": None, "error": None}
    # the agent the campaign would send as: the whole message, what it costs
    agent_id = await _agent(http, system, account)
    status, shown = await call(http, "POST", preview, account.headers, {"contact": contact, "agent_id": agent_id})
    assert (status, shown["body"], shown["missing_variables"]) == (200, "Hi Ann, order #1042 shipped. Riley", [])
    assert (shown["segments"], shown["error"]) == (1, None)
    # a part that cannot be rendered even with the variable as written: null, the variable listed
    status, tpl = await call(http, "POST", system.api_url + "/templates", account.headers,
                             {"name": "Order", "channel": "sms", "body": "Order {{ order.number }}"})
    status, shown = await call(http, "POST", f"{system.api_url}/templates/{tpl['id']}/preview", account.headers,
                               {"contact": contact})
    assert (status, shown["body"], shown["missing_variables"]) == (200, None, ["order"]), shown
    assert (shown["segments"], shown["error"]) == (None, None)


async def test_an_sms_preview_says_what_it_costs_and_whether_it_can_go(http, system, account):
    status, tpl = await call(http, "POST", system.api_url + "/templates", account.headers,
                             {"name": "Note", "channel": "sms", "body": "Hi {{first_name}}: {{note}}"})
    assert status == 201, tpl
    preview = f"{system.api_url}/templates/{tpl['id']}/preview"
    status, shown = await call(http, "POST", preview, account.headers, {"contact": {"first_name": "Ann", "note": "ok"}})
    assert (status, shown["body"], shown["segments"], shown["error"]) == (200, "Hi Ann: ok", 1, None)
    # a note that makes the message longer than an SMS holds: the preview says so
    status, shown = await call(http, "POST", preview, account.headers,
                               {"contact": {"first_name": "Ann", "note": "x" * 1695}})
    assert status == 200, shown
    assert shown["error"] == "the rendered message is 1,703 characters; an SMS holds at most 1,600"
    assert shown["segments"] == 12


async def test_a_campaign_from_a_template_sends_its_text(http, system, account, fake_twilio):
    status, tpl = await call(http, "POST", system.api_url + "/templates", account.headers,
                             {"name": "Hi", "channel": "sms", "body": "Hello from {{agent_name}}"})
    phone = new_phone()
    agent_id = await _agent(http, system, account)
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "t", "type": "sms", "agent_id": agent_id, "template_id": tpl["id"],
                               "contacts": [phone], "status": "scheduled"})
    assert status == 201, body
    assert body["message_template"] == "Hello from {{agent_name}}"
    await wait_until(lambda: _sent(fake_twilio, phone))
    assert fake_twilio.sent_to(phone)[0].get("Body") == "Hello from Riley"
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "t", "type": "voice", "agent_id": agent_id, "template_id": tpl["id"],
                                "contacts": [phone]})
    assert status == 422
    assert error["error"]["details"][0]["field"] == "template_id"


async def _sent(fake, phone) -> bool:
    return bool(fake.sent_to(phone))


async def test_senders_gate_from_number(http, system, account, fake_twilio):
    agent_id = await _agent(http, system, account)
    own, phone = new_phone(), new_phone()
    campaign = {"name": "s", "type": "sms", "agent_id": agent_id, "contacts": [phone], "message_template": "hi",
                "from_number": own}
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers, campaign)
    assert status == 422
    assert error["error"]["details"][0]["field"] == "from_number"
    fake_twilio.owned_numbers.add(own)  # a number of the platform's Twilio account
    status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert (status, sender["verified"], sender["address"]) == (201, True, own)
    status, _again = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert status == 200
    status, error = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": "12"})
    assert status == 422
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers, {**campaign, "status": "scheduled"}
    )
    assert status == 201, body
    await wait_until(lambda: _sent(fake_twilio, phone))
    assert fake_twilio.sent_to(phone)[0].get("From") == own
    status, listed = await call(http, "GET", system.api_url + "/senders", account.headers)
    assert [s["address"] for s in listed["data"]] == [own]


async def test_one_sender_per_request_and_none_removed_while_a_campaign_sends_from_it(
    http, system, account, fake_twilio
):
    agent_id = await _agent(http, system, account)
    own = new_phone()
    fake_twilio.caller_ids.add(own)  # a verified caller ID of the platform's Twilio account
    status, error = await call(http, "POST", system.api_url + "/senders", account.headers,
                               {"phone": own, "email": "x@example.com"})
    assert status == 422, error  # two at once: neither is dropped silently
    assert [d["field"] for d in error["error"]["details"]] == ["phone", "email"]
    status, _sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert status == 201
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "s", "type": "sms", "agent_id": agent_id, "contacts": [new_phone()],
                               "message_template": "hi", "from_number": own, "schedule": "2030-01-01T09:00:00Z"})
    assert status == 201, body
    status, error = await call(http, "DELETE", f"{system.api_url}/senders/{quote(own)}", account.headers)
    assert status == 409, error
    assert body["id"] in error["error"]["message"]
    status, _listed = await call(http, "GET", system.api_url + "/senders", account.headers)
    assert own in [s["address"] for s in _listed["data"]]
    await call(http, "DELETE", f"{system.api_url}/campaigns/{body['id']}", account.headers)  # a draft: deleted
    status, _none = await call(http, "DELETE", f"{system.api_url}/senders/{quote(own)}", account.headers)
    assert status == 204


async def test_launch_reserves_sends_charge_and_the_rest_is_refunded(http, system, db, fake_twilio):
    account = await make_account(db, balance="1.00")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    agent_id = await _agent(http, system, account)
    good, refused = new_phone(), new_phone()
    fake_twilio.script[refused] = [(400, 21211)]  # never sent, so never charged
    long_text = "x" * 200  # two segments
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "b", "type": "sms", "agent_id": agent_id, "contacts": [good, refused],
                               "message_template": long_text})
    campaign = f"{system.api_url}/campaigns/{body['id']}"
    status, launched = await call(http, "POST", campaign + "/launch", account.headers)
    assert status == 200, launched

    async def completed():
        _status, c = await call(http, "GET", campaign, account.headers)
        return c if c["status"] == "completed" and c["reserved"] == "0.0000" else None

    final = await wait_until(completed)
    assert final["reserved"] == "0.0000"
    status, acct = await call(http, "GET", system.api_url + "/account", account.headers)
    # estimate 2 contacts x 2 segments x 0.01 = 0.04 reserved; one send of 2 segments charged
    assert Decimal(acct["balance"]) == Decimal("0.98")
    assert await db.fetchval("SELECT cost FROM deliveries WHERE to_address = $1", good) == Decimal("0.0200")
    assert await db.fetchval("SELECT cost FROM deliveries WHERE to_address = $1", refused) is None
    # and each delivery says its cost, as the CSV export does: four decimals, null for none
    status, page = await call(http, "GET", campaign + "/deliveries", account.headers)
    assert status == 200, page
    assert {d["to"]: d["cost"] for d in page["data"]} == {good: "0.0200", refused: None}
    status, acct_body = await call(http, "PATCH", system.api_url + "/account", account.headers,
                                   {"default_timezone": "Europe/Paris", "quiet_hours": False})
    assert (acct_body["default_timezone"], acct_body["quiet_hours"]) == ("Europe/Paris", False)
    status, _error = await call(
        http, "PATCH", system.api_url + "/account", account.headers, {"default_timezone": "Nowhere"}
    )
    assert status == 422


async def test_contacts_that_cannot_be_reached_never_make_a_launch_a_402(http, system, db, fake_twilio):
    # Given an account whose balance covers three one-segment messages, and a campaign to five
    # contacts, two of whom opted out of SMS
    account = await make_account(db, balance="0.03")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    agent_id = await _agent(http, system, account)
    phones = [new_phone() for _ in range(5)]
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "few", "type": "sms", "agent_id": agent_id, "contacts": phones,
                               "message_template": "Hi"})
    assert status == 201, body
    await db.execute("UPDATE contacts SET opted_out_sms = true WHERE account_id = $1 AND phone = ANY($2)",
                     account.id, phones[3:])
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    # Then the dry run counts only the three it can reach, and says the balance covers them
    status, report = await call(http, "POST", campaign + "/dry-run", account.headers)
    assert status == 200, report
    assert report["cost"] == {"estimate": "0.0300", "balance": "0.0300", "sufficient": True}, report

    # When it is launched: not a 402, the three held, sent, and charged
    status, launched = await call(http, "POST", campaign + "/launch", account.headers)
    assert status == 200, launched
    assert launched["reserved"] == "0.0300", launched

    async def completed():
        _status, c = await call(http, "GET", campaign, account.headers)
        return c if c["status"] == "completed" and c["reserved"] == "0.0000" else None

    await wait_until(completed)
    status, results = await call(http, "GET", campaign + "/results", account.headers)
    assert (results["sent"], results["skipped"]) == (3, 2), results
    assert [len(fake_twilio.sent_to(p)) for p in phones] == [1, 1, 1, 0, 0]
    status, acct = await call(http, "GET", system.api_url + "/account", account.headers)
    assert (acct["balance"], acct["reserved"]) == ("0.0000", "0.0000")

    # And one contact more than the money covers is still a 402, naming what it needs
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "more", "type": "sms", "agent_id": agent_id, "contacts": [new_phone()],
                               "message_template": "Hi", "status": "scheduled"})
    assert (status, body["error"]["estimate"]) == (402, "0.0100"), body


async def test_launch_reports_contacts_lacking_variables_and_they_fail_not_send(http, system, account, fake_twilio):
    agent_id = await _agent(http, system, account)
    full, partial = new_phone(), new_phone()
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "vars", "type": "sms", "agent_id": agent_id,
                               "contacts": [{"phone": full, "first_name": "Ann", "order_number": "A-1"},
                                            {"phone": partial, "first_name": "Bo"}],
                               "message_template":
                                   "Hi {{first_name}}, order #{{order_number}} {{ eta | default('soon') }}"})
    assert "missing_variables" not in body  # a draft: nothing is sent yet
    status, launched = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/launch", account.headers)
    assert status == 200, launched
    assert launched["missing_variables"] == {"order_number": 1}
    # Created and launched in one request: the same answer.
    status, at_once = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                 {"name": "vars at once", "type": "sms", "agent_id": agent_id, "status": "scheduled",
                                  "contacts": [{"phone": new_phone(), "first_name": "Cy"}],
                                  "message_template": "Hi {{first_name}}, order #{{order_number}}"})
    assert status == 201, at_once
    assert (at_once["status"], at_once["missing_variables"]) == ("scheduled", {"order_number": 1})

    async def done():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r if r["status"] == "completed" else None

    results = await wait_until(done)
    assert (results["sent"], results["failed"]) == (1, 1)
    assert fake_twilio.sent_to(full)[0].get("Body") == "Hi Ann, order #A-1 soon"
    assert fake_twilio.sent_to(partial) == []
    status, page = await call(
        http, "GET", f"{system.api_url}/campaigns/{body['id']}/deliveries?state=failed", account.headers
    )
    assert page["data"][0]["error"] == "missing variable: order_number"


async def test_an_empty_metadata_value_is_there_and_a_null_is_missing_at_launch_as_at_send(
    http, system, account, fake_twilio
):
    agent_id = await _agent(http, system, account)
    empty, null, nameless = new_phone(), new_phone(), new_phone()
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "empties", "type": "sms", "agent_id": agent_id, "status": "scheduled",
                               "contacts": [{"phone": empty, "first_name": "Ann", "suffix": "", "note": "x"},
                                            {"phone": null, "first_name": "Bo", "suffix": "!", "note": None},
                                            {"phone": nameless, "first_name": "", "suffix": "", "note": "y"}],
                               "message_template": "Hi {{first_name}}{{suffix}} {{note}}"})
    assert status == 201, body
    assert body["missing_variables"] == {"note": 1, "first_name": 1}, body

    async def done():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r if r["status"] == "completed" else None

    results = await wait_until(done)
    assert (results["sent"], results["failed"]) == (1, 2), results
    assert [m.get("Body") for m in fake_twilio.sent_to(empty)] == ["Hi Ann x"]
    assert fake_twilio.sent_to(null) == fake_twilio.sent_to(nameless) == []
    status, page = await call(
        http, "GET", f"{system.api_url}/campaigns/{body['id']}/deliveries?state=failed", account.headers
    )
    assert sorted(d["error"] for d in page["data"]) == ["missing variable: first_name", "missing variable: note"]


async def test_sends_stop_where_the_money_does_and_go_on_once_credited(http, system, db, fake_twilio):
    # Given an account with 0.20 and SMS at 0.01 a segment, and six contacts whose `{{x}}` renders
    # 300 Cyrillic characters: five UCS-2 segments, 0.05 a message. Launch reserves from the
    # template's text (one segment each, 0.06): the rendered messages cost five times that
    account = await make_account(db, balance="0.20")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    agent_id = await _agent(http, system, account)
    phones = [new_phone() for _ in range(6)]
    for phone in phones:
        status, body = await call(http, "POST", system.api_url + "/contacts", account.headers,
                                  {"phone": phone, "metadata": {"x": "Ж" * 300}})
        assert status in (200, 201), body
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "long", "type": "sms", "agent_id": agent_id, "contacts": phones,
                               "message_template": "{{x}}", "status": "scheduled"})
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"

    # When it sends, it pauses where the money ends, saying why
    async def reached(wanted: str):
        _status, c = await call(http, "GET", campaign, account.headers)
        return c if c["status"] == wanted else None

    paused = await wait_until(lambda: reached("paused"), message="the campaign paused for its balance")
    assert paused["paused_reason"] == {"code": "balance", "needed": "0.0500", "available": "0.0000"}

    # Then four messages went (0.20 of 0.05 each), never five, and the balance is not below zero
    async def settled() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state IN ('queued', 'sending')", body["id"])

    await wait_until(settled, message="nothing queued or sending")
    assert sum(len(fake_twilio.sent_to(p)) for p in phones) == 4
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0")
    assert await db.fetchval("SELECT sum(cost) FROM deliveries WHERE campaign_id = $1", body["id"]) == Decimal("0.2")
    session = await signed_in(system, account.key)  # and the campaign's page says it, in words
    async with session, session.get(f"{system.api_url}/dashboard/campaigns/{body['id']}") as page:
        assert "Paused: out of money." in await page.text()

    # When the account is credited and a person resumes, the other two are sent, each once
    await db.execute("UPDATE accounts SET balance = balance + 0.25 WHERE id = $1", account.id)
    status, resumed = await call(http, "POST", campaign + "/resume", account.headers)
    assert status == 200, resumed
    final = await wait_until(lambda: reached("completed"), message="the campaign completed")
    assert final["paused_reason"] is None
    assert all(len(fake_twilio.sent_to(p)) == 1 for p in phones)
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0.15")


async def test_the_money_of_failing_sends_in_flight_comes_back_before_any_pause(http, system, db, fake_twilio):
    # Given an account with 0.10 (two messages of 0.05) and a campaign of three contacts, two of
    # whom the provider refuses after a while (their costs, held while in flight, come back)
    account = await make_account(db, balance="0.10")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    agent_id = await _agent(http, system, account)
    refused, kept = [new_phone(), new_phone()], new_phone()
    for phone in refused:  # (every time: a send that timed out on a loaded machine is sent again)
        fake_twilio.script[phone] = [(400, 21211)] * 5
    fake_twilio.response_delay = 0.5
    try:
        status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                  {"name": "refunds", "type": "sms", "agent_id": agent_id, "max_concurrent": 3,
                                   "contacts": [{"phone": p, "x": "x" * 700} for p in [*refused, kept]],
                                   "message_template": "{{x}}", "status": "scheduled"})  # 5 segments each
        assert status == 201, body

        # When it sends: two go at once (all the money), the third waits for their outcomes
        async def ended():
            _status, c = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}", account.headers)
            return c if c["status"] not in ("scheduled", "running") else None

        final = await wait_until(ended, timeout=60, message="the campaign ended or paused")
    finally:
        fake_twilio.response_delay = 0.0

    # Then it never paused for money: the refused sends' costs came back and paid for the third
    assert (final["status"], final["paused_reason"]) == ("completed", None), final
    assert len(fake_twilio.sent_to(kept)) == 1
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0.05")


async def test_a_cancel_gives_back_what_the_campaign_held_at_once(http, system, db):
    # Given a campaign launched for next year: its estimate is held
    account = await make_account(db, balance="1.00")
    agent_id = await _agent(http, system, account)
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "later", "type": "sms", "agent_id": agent_id, "contacts": [new_phone()],
                               "message_template": "Hi", "scheduled_at": "2027-06-01T09:00:00Z",
                               "status": "scheduled"})
    assert status == 201, body
    status, acct = await call(http, "GET", system.api_url + "/account", account.headers)
    assert Decimal(acct["reserved"]) > 0
    # When it is cancelled, the answer and the account already show it given back
    status, cancelled = await call(http, "POST", f"{system.api_url}/campaigns/{body['id']}/cancel", account.headers)
    assert (status, cancelled["status"], cancelled["reserved"]) == (200, "cancelled", "0.0000"), cancelled
    status, acct = await call(http, "GET", system.api_url + "/account", account.headers)
    assert (acct["balance"], acct["reserved"]) == ("1.0000", "0.0000")
