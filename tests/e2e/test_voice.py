"""Voice campaigns end to end: API → scheduler → two voice dispatchers → fake Twilio placing calls
that ring, answer, talk (TwiML from the tracker, speech answered by the agent) and end → tracker."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from twilio.request_validator import RequestValidator

from services.tracker.voice import GOODBYE, STOPPED
from tests.conftest import TWILIO_TOKEN
from tests.support import Service, call, dashboard_page, new_phone, wait_until

pytestmark = pytest.mark.e2e

RULES = {"rules": [{"keyword": "works", "reply": "Great, see you then!"}], "default_reply": None}


@pytest.fixture(scope="module")
def voice_dispatchers(system, tmp_path_factory):
    """Two voice dispatchers beside the session's services."""
    logs = tmp_path_factory.mktemp("voice")
    # A call holds little: a small pool and prefetch each (calls last; the command is acked when placed).
    env = {**system.env, "CAMPAIGNS_DB_POOL_MAX": "4", "CAMPAIGNS_DISPATCH_PREFETCH": "4"}
    services = [Service(f"voice-{i}", ["dispatcher", "--channel", "voice"], env, logs) for i in (1, 2)]
    for service in services:
        service.start()

    async def started() -> bool:
        return all(s.alive() and "dispatcher.started" in s.output() for s in services)

    try:
        asyncio.run(wait_until(started, timeout=60, message="voice dispatchers started"))
        yield services
    finally:
        for service in services:
            service.stop()


@pytest.fixture
def calls(fake_twilio, voice_dispatchers):
    """The fake Twilio, with its call scripts and step delay restored after the test."""
    delay = fake_twilio.call_step_delay
    yield fake_twilio
    fake_twilio.call_step_delay = delay


async def _agent(http, system, account) -> str:
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Riley", "mode": "rules", "settings": RULES})
    assert status == 201, agent
    return agent["id"]


async def _finished(http, system, account, campaign_id: str) -> dict:
    async def done() -> dict | None:
        _, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
        return body if body["status"] == "completed" else None

    return await wait_until(done, timeout=60, message="voice campaign completed")


async def test_the_seed_voice_request_calls_each_contact_and_holds_a_conversation(http, system, account, calls, db):
    # Given the API reference's voice request to 4 contacts, one of whom talks for 125 s
    agent_id = await _agent(http, system, account)
    phones = [new_phone() for _ in range(4)]
    calls.call_durations[phones[0]] = 125
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Follow-up Campaign", "agent_id": agent_id, "type": "voice", "contacts": phones,
        "message_template": "Hi, this is {{agent_name}} following up on our conversation.",
        "schedule": "2026-03-10T09:00:00Z", "max_concurrent": 5,
    })
    assert status == 201, created
    assert (created["status"], created["type"], created["total_contacts"]) == ("draft", "voice", 4)

    # When it is launched
    status, launched = await call(http, "POST", f"{system.api_url}/campaigns/{created['id']}/launch", account.headers)
    assert status == 200, launched

    # Then each contact is called once and hears the opening, then the agent's answer to what they said
    final = await _finished(http, system, account, created["id"])
    opening = "Hi, this is Riley following up on our conversation."
    for phone in phones:
        placed = calls.calls_to(phone)
        assert len(placed) == 1, phone
        assert placed[0]["status"] == "completed"
        assert placed[0]["heard"] == ["Yes, that works for me."]
        assert placed[0]["said"] == [opening, "Great, see you then!", GOODBYE]
        assert placed[0]["webhook_errors"] == []
        request = next(r for r in calls.requests if r.path.endswith("/Calls.json") and r.get("To") == phone)
        answer_url = system.tracker_url + "/webhooks/twilio/voice/answer?delivery_id=dlv"
        assert (request.get("Url") or "").startswith(answer_url)
        assert (request.get("StatusCallback") or "").startswith(system.tracker_url + "/webhooks/twilio/voice/status?")
        assert request.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
        assert (request.get("TimeLimit"), request.get("Timeout")) == ("300", "30")
    assert final["sent"] == final["delivered"] == final["replied"] == 4
    assert final["failed"] == final["pending"] == 0
    assert final["reply_rate"] == "100.0%"

    # the conversation is recorded, the minutes charged (every started minute), every slot freed
    rows = await db.fetch(
        "SELECT direction, author, body FROM messages WHERE delivery_id = (SELECT id FROM deliveries"
        " WHERE campaign_id = $1 AND to_address = $2) ORDER BY created_at, id", created["id"], phones[1])
    assert [(r["direction"], r["author"], r["body"]) for r in rows] == [
        ("out", "agent", opening), ("in", "contact", "Yes, that works for me."),
        ("out", "agent", "Great, see you then!"), ("out", "system", GOODBYE)]
    price = await db.fetchval("SELECT price_voice_minute FROM accounts WHERE id = $1", account.id)
    costs = {r["to_address"]: r["cost"] for r in await db.fetch(
        "SELECT to_address, cost FROM deliveries WHERE campaign_id = $1", created["id"])}
    assert costs == {phones[0]: 3 * price, **{p: price for p in phones[1:]}}

    async def settled() -> bool:
        balance = await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id)
        return balance == Decimal("100") - 6 * price

    await wait_until(settled, message="unused reservation returned, calls charged")
    held = await db.fetchval(
        "SELECT in_flight FROM campaign_flow WHERE campaign_id = $1", created["id"])
    assert held == 0


async def test_a_call_listens_in_the_language_it_speaks(http, system, account, calls):
    # Given a voice campaign whose <Say> speaks British English
    agent_id = await _agent(http, system, account)
    phone = new_phone()
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "British", "agent_id": agent_id, "type": "voice", "contacts": [phone], "status": "scheduled",
        "message_template": "Hello, this is {{agent_name}}.", "voice": {"language": "en-GB"},
    })
    assert status == 201, created

    # When the call is answered and the contact speaks
    await _finished(http, system, account, created["id"])

    # Then every <Gather> recognised the speech in en-GB too (Twilio's default is en-US)
    placed = calls.calls_to(phone)
    assert placed[0]["heard"] == ["Yes, that works for me."]
    assert placed[0]["listened_in"] == ["en-GB", "en-GB"], placed[0]  # the opening's, then the agent's answer's


async def test_a_calls_conversation_page_shows_its_opening_once(http, system, account, calls, db):
    # Given an agent whose answer to the contact is the very words of the call's opening
    opening = "Hello again, this is Riley."
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {
        "name": "Riley", "mode": "rules",
        "settings": {"rules": [{"keyword": "works", "reply": opening}], "default_reply": None}})
    assert status == 201, agent
    phone = new_phone()
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Opening once", "agent_id": agent["id"], "type": "voice", "contacts": [phone],
        "message_template": opening, "status": "scheduled",
    })
    assert status == 201, created
    await _finished(http, system, account, created["id"])
    assert calls.calls_to(phone)[0]["said"] == [opening, opening, GOODBYE]
    contact_id = await db.fetchval("SELECT contact_id FROM deliveries WHERE campaign_id = $1", created["id"])
    page = await dashboard_page(system, account.key, f"/campaigns/{created['id']}/conversations/{contact_id}")
    # Then the page shows the opening once, as the agent's first words when the call was answered, and
    # the agent's answer that says the same again
    thread = re.findall(r'<li class="(in|out)"><span class="meta">([^·<]+) ·.*?</span>([^<]*)</li>', page)
    assert [(d, who.strip(), body) for d, who, body in thread] == [
        ("out", "The agent", opening), ("in", "From the contact", "Yes, that works for me."),
        ("out", "The agent", opening), ("out", "System", GOODBYE)], thread


async def test_a_webhook_agent_on_a_call_is_posted_the_opening_once_and_the_campaign(
    http, system, account, calls, agent_endpoint
):
    # Given a call whose contact says two things, and a `webhook` agent that answers each
    phone = new_phone()
    calls.speech[phone] = ["Who is this?", "Thanks"]
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Riley", "mode": "webhook", "settings": {"url": agent_endpoint.webhook_url}})
    assert status == 201, agent
    opening = "Hi, this is Riley from the clinic."
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Webhook call", "agent_id": agent["id"], "type": "voice", "contacts": [phone],
        "message_template": opening, "status": "scheduled",
    })
    assert status == 201, created
    await _finished(http, system, account, created["id"])
    assert calls.calls_to(phone)[0]["said"] == [opening, "Sure.", "Sure.", GOODBYE]
    # Then the agent was posted the call's opening once, as the agent's first words, and the campaign
    first, second = agent_endpoint.seen
    assert first["campaign"] == {"id": created["id"], "channel": "voice"}
    assert second["messages"] == [
        {"direction": "out", "author": "agent", "body": opening},
        {"direction": "in", "author": "contact", "body": "Who is this?"},
        {"direction": "out", "author": "agent", "body": "Sure."},
        {"direction": "in", "author": "contact", "body": "Thanks"},
    ]


async def test_max_concurrent_holds_while_calls_last(http, system, account, calls):
    # Given calls that last (~0.5 s each) and a campaign allowing 2 at once, served by two dispatchers
    agent_id = await _agent(http, system, account)
    phones = [new_phone() for _ in range(8)]
    calls.call_step_delay = 0.06
    calls.peak_calls_in_progress = 0
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Throttled calls", "agent_id": agent_id, "type": "voice", "contacts": phones,
        "message_template": "Hello from {{agent_name}}", "max_concurrent": 2, "status": "scheduled",
    })
    assert status == 201, created
    final = await _finished(http, system, account, created["id"])
    # Then never more than 2 calls were in progress at once (and 2 were), and everyone was called once
    assert calls.peak_calls_in_progress == 2
    assert [len(calls.calls_to(p)) for p in phones] == [1] * 8
    assert final["delivered"] == 8


async def test_busy_is_called_again_and_unanswered_gives_up(http, system, account, calls, db):
    # Given one contact busy on the first call, one who never answers, and 1 retry 1 s later
    agent_id = await _agent(http, system, account)
    busy, silent = new_phone(), new_phone()
    calls.call_outcomes[busy] = ["busy"]
    calls.call_outcomes[silent] = ["no-answer", "no-answer"]
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Retries", "agent_id": agent_id, "type": "voice", "contacts": [busy, silent],
        "message_template": "Hi", "max_retries": 1, "retry_interval": "1s", "status": "scheduled",
    })
    assert status == 201, created
    final = await _finished(http, system, account, created["id"])
    # Then each was called twice: the busy one delivered once, the silent one failed
    assert [c["outcome"] for c in calls.calls_to(busy)] == ["busy", "answer"]
    assert [c["outcome"] for c in calls.calls_to(silent)] == ["no-answer", "no-answer"]
    assert (final["sent"], final["delivered"], final["failed"], final["replied"]) == (1, 1, 1, 1)
    rows = {r["to_address"]: r for r in await db.fetch(
        "SELECT to_address, state, attempts, error, cost FROM deliveries WHERE campaign_id = $1", created["id"])}
    assert (rows[busy]["state"], rows[busy]["attempts"]) == ("delivered", 2)
    assert (rows[silent]["state"], rows[silent]["attempts"], rows[silent]["cost"]) == ("failed", 2, None)
    assert rows[silent]["error"].startswith("twilio no-answer")


async def test_asking_not_to_be_called_opts_the_contact_out_of_voice(http, system, account, calls, db):
    agent_id = await _agent(http, system, account)
    phone = new_phone()
    calls.speech[phone] = ["Please stop calling me."]
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Stop", "agent_id": agent_id, "type": "voice", "contacts": [phone],
        "message_template": "Hi", "status": "scheduled",
    })
    assert status == 201, created
    final = await _finished(http, system, account, created["id"])
    assert calls.calls_to(phone)[0]["said"] == ["Hi", STOPPED]
    assert (final["delivered"], final["replied"]) == (1, 0)
    contact = await db.fetchrow("SELECT * FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone)
    assert (contact["opted_out_voice"], contact["opted_out_sms"]) == (True, False)
    # it counts against the campaign's opt-out rate, as a STOP by text does
    assert await db.fetchval("SELECT opt_outs FROM campaign_breaker WHERE campaign_id = $1", created["id"]) == 1
    # a later voice campaign skips the contact
    _, again = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Again", "agent_id": agent_id, "type": "voice", "contacts": [phone],
        "message_template": "Hi", "status": "scheduled",
    })
    assert (await _finished(http, system, account, again["id"]))["skipped"] == 1
    assert len(calls.calls_to(phone)) == 1


@pytest.mark.parametrize("kind", ["answer", "gather", "status"])
async def test_a_bad_signature_on_a_voice_webhook_is_403(http, system, kind, voice_dispatchers):
    url = f"{system.tracker_url}/webhooks/twilio/voice/{kind}?delivery_id=dlv_x"
    form = {"CallSid": "CA" + "2" * 32, "CallStatus": "completed", "SpeechResult": "hi", "To": "+14155550123"}
    wrong = RequestValidator("not-the-token").compute_signature(url, form)
    for headers in ({"X-Twilio-Signature": wrong}, {}):
        async with http.post(url, data=form, headers=headers) as response:
            assert response.status == 403
    right = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    async with http.post(url, data=form, headers={"X-Twilio-Signature": right}) as response:
        assert response.status == 200  # signed: accepted (an unknown delivery changes nothing)
        assert "<Response>" in await response.text()


async def test_a_call_with_nothing_to_say_is_refused_at_launch(http, system, account, db):
    agent_id = await _agent(http, system, account)  # an agent without an opening message
    silent = {"name": "silent", "type": "voice", "agent_id": agent_id, "contacts": [new_phone()]}
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, silent)
    assert status == 201, draft  # a draft may still be given its words
    balance = await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id)
    status, body = await call(http, "POST", f"{system.api_url}/campaigns/{draft['id']}/launch", account.headers)
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "message_template"
    assert "a call needs something to say" in body["error"]["details"][0]["reason"]
    assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", draft["id"]) == "draft"
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == balance  # nothing held
    # Created and launched in one request: refused, and nothing written.
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {**silent, "name": "silent at once", "status": "scheduled"})
    assert status == 422, body
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'silent at once'") == 0
    # Its own opening message is something to say.
    status, spoken = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                {**silent, "name": "spoken", "opening_message": "Hi, this is Riley."})
    assert status == 201, spoken
    status, body = await call(http, "POST", f"{system.api_url}/campaigns/{spoken['id']}/launch", account.headers)
    assert status == 200, body
    await call(http, "POST", f"{system.api_url}/campaigns/{spoken['id']}/cancel", account.headers)


async def test_a_calls_opening_counts_the_contacts_lacking_its_variables_before_launch_and_at_it(
    http, system, account, db
):
    # Given two voice drafts to a named and a nameless contact: one with an opening of its own, one
    # speaking its agent's opening; both read {{first_name}} and {{plan_name}}
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Riley", "opening_message": "Hello {{first_name}}, about {{plan_name}}."})
    assert status == 201, agent
    contacts = [{"phone": new_phone(), "first_name": "Ann", "plan_name": "Gold"}, {"phone": new_phone()}]
    own = {"name": "own", "type": "voice", "agent_id": agent["id"], "contacts": contacts,
           "opening_message": "Hi {{first_name}}, your {{plan_name}} plan."}
    for draft in (own, {"name": "agent's", "type": "voice", "agent_id": agent["id"], "contacts": contacts}):
        status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, draft)
        assert status == 201, body
        campaign = f"{system.api_url}/campaigns/{body['id']}"

        # Then the dry run names them, and so does the launch
        status, report = await call(http, "POST", campaign + "/dry-run", account.headers)
        assert (status, report["missing_variables"]) == (200, {"first_name": 1, "plan_name": 1}), report
        status, launched = await call(http, "POST", campaign + "/launch", account.headers)
        assert (status, launched["missing_variables"]) == (200, {"first_name": 1, "plan_name": 1}), launched
        await call(http, "POST", campaign + "/cancel", account.headers)
