"""Replies: STOP/START/HELP, replies counted in results, the agent answering on the same channel."""

from __future__ import annotations

import pytest

from tests.support import call, new_phone, results_when, wait_until

pytestmark = pytest.mark.e2e


async def _delivered_campaign(http, system, account, phones, agent_settings=None) -> str:
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Riley", "mode": "rules", "settings": agent_settings or {}})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "replies", "type": "sms", "agent_id": agent["id"], "contacts": phones,
                               "message_template": "Reply CONFIRM or RESCHEDULE", "status": "scheduled"})
    assert status == 201, body

    async def delivered():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r["delivered"] == len(phones)

    await wait_until(delivered)
    return body["id"]


async def test_a_reply_is_counted_and_answered_by_the_rules_agent(http, system, account, texting, db):
    phones = [new_phone() for _ in range(4)]
    campaign_id = await _delivered_campaign(http, system, account, phones, {
        "rules": [{"keyword": "CONFIRM", "reply": "Thanks, you're confirmed!"},
                  {"keyword": "RESCHEDULE", "reply": "Sure, what time suits you?"}],
    })
    assert await texting(phones[0], "confirm please") == "Thanks, you're confirmed!"
    assert await texting(phones[1], "Can we RESCHEDULE?") == "Sure, what time suits you?"
    assert await texting(phones[1], "tomorrow 3pm") is None  # no rule, no default: no answer, still counted once
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert results["replied"] == 2
    assert results["reply_rate"] == "50.0%"
    assert results["average_response_time"] is not None
    rows = await db.fetch(
        "SELECT direction, author, body FROM messages WHERE campaign_id = $1 ORDER BY created_at, id", campaign_id
    )
    assert [(r["direction"], r["author"]) for r in rows] == [
        ("in", "contact"), ("out", "agent"), ("in", "contact"), ("out", "agent"), ("in", "contact")]


async def test_a_rules_reply_is_rendered_for_the_contact_like_a_campaign_message(http, system, account, texting, db):
    """Given rules whose replies use the campaign messages' variables, a contact's reply is answered
    with them filled in (built-ins, metadata, the agent's name); a variable the contact lacks is
    left empty; a reply that is no valid template is refused when the agent is saved."""
    status, bad = await call(http, "POST", system.api_url + "/agents", account.headers, {
        "name": "Riley", "mode": "rules", "settings": {"rules": [{"keyword": "X", "reply": "Hi {{ first_name"}],
                                                      "default_reply": "{% for %}"}})
    assert status == 422, bad
    assert {d["field"] for d in bad["error"]["details"]} == {"settings.rules[0].reply", "settings.default_reply"}
    ann, bob = new_phone(), new_phone()
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {
        "name": "Riley", "mode": "rules", "settings": {
            "rules": [{"keyword": "CONFIRM", "reply": "Thanks {{first_name}}, confirmed!"},
                      {"keyword": "PLAN", "reply": "{{agent_name}} here: your plan is {{ plan_name }}."}],
            "default_reply": "Sorry {{ first_name | default('there') }}, {{agent_name}} did not get that."}})
    assert status == 201, agent
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "rendered", "type": "sms", "agent_id": agent["id"],
        "contacts": [{"phone": ann, "first_name": "Ann", "plan_name": "Pro"}, bob],
        "message_template": "Reply CONFIRM", "status": "scheduled"})
    assert status == 201, body

    async def delivered():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r["delivered"] == 2

    await wait_until(delivered)
    assert await texting(ann, "confirm") == "Thanks Ann, confirmed!"
    assert await texting(ann, "my plan?") == "Riley here: your plan is Pro."
    assert await texting(ann, "what?") == "Sorry Ann, Riley did not get that."
    assert await texting(bob, "CONFIRM") == "Thanks , confirmed!"  # no first name: left empty, still answered
    assert await texting(bob, "hmm") == "Sorry there, Riley did not get that."
    recorded = await db.fetch(
        "SELECT body FROM messages WHERE campaign_id = $1 AND author = 'agent' ORDER BY created_at", body["id"])
    assert [r["body"] for r in recorded] == [
        "Thanks Ann, confirmed!", "Riley here: your plan is Pro.", "Sorry Ann, Riley did not get that.",
        "Thanks , confirmed!", "Sorry there, Riley did not get that."]


async def test_stop_opts_out_start_opts_back_in_help_answers(http, system, account, texting, db, fake_twilio):
    phone = new_phone()
    campaign_id = await _delivered_campaign(http, system, account, [phone])
    assert "unsubscribed" in (await texting(phone, "Stop"))
    assert await db.fetchval(
        "SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone)
    assert "STOP" in (await texting(phone, "help"))
    # an opted-out contact is skipped by the next campaign
    second = await _delivered_campaign_skip(http, system, account, phone)
    assert second["skipped"] == 1
    assert len(fake_twilio.sent_to(phone)) == 1
    assert "resubscribed" in (await texting(phone, "START"))
    assert not await db.fetchval(
        "SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone)
    # keywords are not replies
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert results["replied"] == 0
    # "stop please" is not the keyword (carriers match the whole message): a reply
    await texting(phone, "stop please")
    assert not await db.fetchval(
        "SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone)


async def _delivered_campaign_skip(http, system, account, phone) -> dict:
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "R"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "again", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                "message_template": "hi", "status": "scheduled"})

    async def done():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r if r["status"] == "completed" else None

    return await wait_until(done)


async def test_a_failing_agent_never_breaks_ingestion(http, system, account, texting, db):
    phone = new_phone()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Hook", "mode": "webhook", "settings": {"url": "http://127.0.0.1:9/nowhere"}})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "hook", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                "message_template": "hi", "status": "scheduled"})

    async def delivered():
        _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r["delivered"] == 1

    await wait_until(delivered)
    assert await texting(phone, "hello?") is None
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
    assert results["replied"] == 1


async def test_an_unsigned_inbound_message_is_403(http, system):
    async with http.post(system.tracker_url + "/webhooks/twilio/sms/inbound",
                         data={"From": "+14155550123", "Body": "STOP", "MessageSid": "SMx"}) as response:
        assert response.status == 403


async def test_the_llm_agent_gets_the_conversation_and_its_answer_goes_back(http, system, account, texting):
    from aiohttp import web

    seen: list[dict] = []

    async def completions(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers.get("Authorization"), **(await request.json())})
        answer = "Tuesday at 3pm works, {{ first_name }}."  # an LLM's answer is never rendered as a template
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": answer}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        phone = new_phone()
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {
            "name": "Riley", "instructions": "Book appointments.", "mode": "llm",
            "settings": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "small", "api_key": "k-123"}})
        assert agent["settings"]["api_key"] == "[set]"  # never echoed
        _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                   {"name": "llm", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                    "message_template": "When suits you?", "status": "scheduled"})

        async def delivered():
            _status, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
            return r["delivered"] == 1

        await wait_until(delivered)
        assert await texting(phone, "Is Tuesday possible?") == "Tuesday at 3pm works, {{ first_name }}."
    finally:
        await runner.cleanup()
    assert seen[0]["auth"] == "Bearer k-123"
    assert seen[0]["model"] == "small"
    assert seen[0]["messages"] == [
        {"role": "system", "content": "Book appointments."},
        {"role": "assistant", "content": "When suits you?"},  # the campaign's message, which the contact answers
        {"role": "user", "content": "Is Tuesday possible?"},
    ]


async def test_a_webhook_agent_is_posted_the_campaigns_message_first_and_the_campaign(
    http, system, account, texting, agent_endpoint
):
    """Given an SMS campaign that sent "Hi Wen" and a `webhook` agent, the conversation POSTed when
    the contact answers starts with that message, names the campaign and its channel, and keeps
    the agent's answers in order."""
    phone = new_phone()
    agent_endpoint.answer = "It is noon."
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Hook", "instructions": "Tell the time.", "mode": "webhook",
                                "settings": {"url": agent_endpoint.webhook_url, "secret": "s3"}})
    assert status == 201, agent
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "time", "type": "sms", "agent_id": agent["id"],
                               "contacts": [{"phone": phone, "first_name": "Wen"}],
                               "message_template": "Hi {{ first_name }}", "status": "scheduled"})
    assert status == 201, body
    await results_when(http, system.api_url, account.headers, body["id"], lambda r: r["delivered"] == 1)

    assert await texting(phone, "What time is it?") == "It is noon."
    assert await texting(phone, "Thanks") == "It is noon."

    first, second = agent_endpoint.seen
    assert first["campaign"] == {"id": body["id"], "channel": "sms"}
    assert first["messages"] == [
        {"direction": "out", "author": "campaign", "body": "Hi Wen"},
        {"direction": "in", "author": "contact", "body": "What time is it?"},
    ]
    assert second["messages"] == [
        {"direction": "out", "author": "campaign", "body": "Hi Wen"},
        {"direction": "in", "author": "contact", "body": "What time is it?"},
        {"direction": "out", "author": "agent", "body": "It is noon."},
        {"direction": "in", "author": "contact", "body": "Thanks"},
    ]
    # (the keys it carried before are kept)
    assert first["agent"] == {"id": agent["id"], "name": "Hook", "instructions": "Tell the time."}
    assert (first["contact"]["phone"], first["contact"]["first_name"]) == (phone, "Wen")
