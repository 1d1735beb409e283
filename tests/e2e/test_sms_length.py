"""An SMS holds at most 1,600 characters (Twilio refuses a longer body: 21617). A template whose own
text is longer is a 422 wherever an SMS text is written; a message that comes out longer for a
contact fails that delivery, sent to nobody and charged nothing, and the dry run says so."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support import call, new_phone, results_when, wait_until

pytestmark = pytest.mark.e2e

TOO_LONG = "an SMS holds at most 1,600 characters; this template writes 2,000 without its variables"


def _reasons(body: dict) -> dict[str, str]:
    return {d["field"]: d["reason"] for d in body["error"]["details"]}


async def test_an_sms_template_too_long_without_its_variables_is_a_422(http, system, account):
    api = system.api_url
    _status, agent = await call(http, "POST", api + "/agents", account.headers, {"name": "Riley"})
    sms = {"name": "long", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()]}
    # Given texts of 2,000 characters on their own
    status, answer = await call(http, "POST", api + "/campaigns", account.headers,
                                {**sms, "message_template": "x" * 2000})
    assert status == 422, answer
    assert _reasons(answer) == {"message_template": TOO_LONG}
    status, answer = await call(http, "POST", api + "/campaigns", account.headers,
                                {**sms, "config": {"message": "Hi {{ first_name }}, " + "x" * 1995}})
    assert (status, _reasons(answer)) == (422, {"message_template": TOO_LONG})  # "Hi , " and 1,995
    # A template that fits without its variables is the contact's to fit (checked at send time);
    # other channels have no such limit
    status, draft = await call(http, "POST", api + "/campaigns", account.headers,
                               {**sms, "message_template": "{{ first_name }}" + "x" * 1590})
    assert status == 201, draft
    status, email = await call(http, "POST", api + "/campaigns", account.headers,
                               {**sms, "type": "email", "contacts": ["a@example.com"], "subject": "s",
                                "message_template": "x" * 2000})
    assert status == 201, email
    # Changing a draft: its text, or its channel under a text too long for SMS
    status, answer = await call(http, "PATCH", f"{api}/campaigns/{draft['id']}", account.headers,
                                {"message_template": "x" * 2000})
    assert (status, _reasons(answer)) == (422, {"message_template": TOO_LONG})
    status, answer = await call(http, "PATCH", f"{api}/campaigns/{email['id']}", account.headers,
                                {"type": "sms", "contacts": [new_phone()]})
    assert (status, _reasons(answer)) == (422, {"message_template": TOO_LONG})
    _status, kept = await call(http, "GET", f"{api}/campaigns/{draft['id']}", account.headers)
    assert kept["message_template"] == "{{ first_name }}" + "x" * 1590  # a 422 changes nothing
    # An SMS template, created or changed; an email template may be longer
    status, answer = await call(http, "POST", api + "/templates", account.headers,
                                {"name": "t", "channel": "sms", "body": "x" * 2000})
    assert (status, _reasons(answer)) == (422, {"body": TOO_LONG})
    status, template = await call(http, "POST", api + "/templates", account.headers,
                                  {"name": "t", "channel": "sms", "body": "x" * 1600})
    assert status == 201, template
    status, answer = await call(http, "PATCH", f"{api}/templates/{template['id']}", account.headers,
                                {"body": "x" * 2000})
    assert (status, _reasons(answer)) == (422, {"body": TOO_LONG})
    status, _email_template = await call(http, "POST", api + "/templates", account.headers,
                                         {"name": "t", "channel": "email", "subject": "s", "body": "x" * 2000})
    assert status == 201


async def test_a_message_rendered_too_long_for_a_contact_fails_unsent_and_costs_nothing(
    http, system, account, db, fake_twilio
):
    api = system.api_url
    _status, agent = await call(http, "POST", api + "/agents", account.headers, {"name": "Riley"})
    # Given a template that fits, and a contact whose note makes it 1,812 characters
    long_one, short_one = new_phone(), new_phone()
    status, campaign = await call(http, "POST", api + "/campaigns", account.headers, {
        "name": "notes", "type": "sms", "agent_id": agent["id"], "message_template": "Hi {{ first_name }}: {{ note }}",
        "contacts": [{"phone": long_one, "first_name": "Ann", "note": "n" * 1804},
                     {"phone": short_one, "first_name": "Bo", "note": "see you"}]})
    assert status == 201, campaign
    reason = "the rendered message is 1,812 characters; an SMS holds at most 1,600"
    # When it is tried out: the dry run's render for that contact says so
    status, report = await call(http, "POST", f"{api}/campaigns/{campaign['id']}/dry-run", account.headers)
    assert status == 200, report
    samples = {s["to"]: s for s in report["samples"]}
    assert samples[long_one]["error"] == reason
    assert (samples[short_one]["error"], samples[short_one]["message"]) == (None, "Hi Bo: see you")
    # And launched
    before = Decimal((await call(http, "GET", api + "/account", account.headers))[1]["balance"])
    status, launched = await call(http, "POST", f"{api}/campaigns/{campaign['id']}/launch", account.headers)
    assert status == 200, launched
    results = await results_when(http, api, account.headers, campaign["id"],
                                 lambda r: r["status"] == "completed")
    # Then that delivery failed with the reason, nothing went to Twilio, and only the other was charged
    assert (results["sent"], results["failed"]) == (1, 1)
    status, page = await call(http, "GET", f"{api}/campaigns/{campaign['id']}/deliveries?state=failed",
                              account.headers)
    assert [(d["to"], d["error"]) for d in page["data"]] == [(long_one, reason)]
    assert fake_twilio.sent_to(long_one) == []
    assert fake_twilio.sent_to(short_one)[0].get("Body") == "Hi Bo: see you"
    costs = dict(await db.fetch("SELECT to_address, cost FROM deliveries WHERE campaign_id = $1", campaign["id"]))
    assert costs == {long_one: None, short_one: Decimal("0.0079")}

    async def refunded():  # what the run did not use is back in the balance
        _status, c = await call(http, "GET", f"{api}/campaigns/{campaign['id']}", account.headers)
        return c["reserved"] == "0.0000"

    await wait_until(refunded)
    after = Decimal((await call(http, "GET", api + "/account", account.headers))[1]["balance"])
    assert before - after == Decimal("0.0079")
