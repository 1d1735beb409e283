"""Emails that come back, at `POST /webhooks/email/inbound`: a bounce report and a reply, matched to
the message they are about by its Message-ID."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from tests.conftest import INBOUND_EMAIL_TOKEN
from tests.e2e.test_email import finished, launch, new_email, one_mail
from tests.support import call, dashboard_page

pytestmark = pytest.mark.e2e


def _dsn(original_message_id: str, recipient: str, status: str = "5.1.1", action: str = "failed") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{status}-{original_message_id.strip('<>')}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: {recipient}\r\nMessage-ID: {original_message_id}\r\n"
        "Subject: Hello\r\n\r\n--B--\r\n"
    ).encode()


def _reply(original_message_id: str, sender: str, text: str) -> bytes:
    reply = EmailMessage()
    reply["From"] = f"Someone <{sender}>"
    reply["To"] = "news@example.com"
    reply["Subject"] = "Re: Hello"
    reply["Message-ID"] = f"<reply-{len(text)}-{original_message_id.strip('<>')}>"
    reply["In-Reply-To"] = original_message_id
    reply.set_content(f"{text}\n\nOn Tue, News wrote:\n> Hi")
    return bytes(reply)


async def _post(http, system, raw: bytes, token: str | None = INBOUND_EMAIL_TOKEN) -> tuple[int, dict]:
    headers = {"Content-Type": "message/rfc822"} | ({"Authorization": f"Bearer {token}"} if token else {})
    async with http.post(system.tracker_url + "/webhooks/email/inbound", data=raw, headers=headers) as response:
        return response.status, await response.json()


async def test_a_bounce_and_a_reply_come_back(http, system, account, sandbox_smtp, db):
    # Given an email campaign to three addresses, whose agent answers "sign" with a welcome
    bounced, replier, stopper = new_email("gone"), new_email("ann"), new_email("bo")
    rules = {"rules": [{"keyword": "sign", "reply": "Welcome aboard!"}], "default_reply": None}
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Riley", "mode": "rules", "settings": rules})
    campaign_id = await launch(http, system, account, agent_id=agent["id"],
                               contacts=[{"email": a} for a in (bounced, replier, stopper)])
    await finished(http, system, account, campaign_id)
    ids = {a: one_mail(sandbox_smtp, a).header("Message-ID") for a in (bounced, replier, stopper)}

    # Without the token, nothing is read
    status, body = await _post(http, system, _dsn(ids[bounced], bounced), token=None)
    assert status == 401, body
    status, body = await _post(http, system, _dsn(ids[bounced], bounced), token="wrong")
    assert (status, body["error"]["code"]) == (401, "unauthorized")

    # A hard bounce: the delivery is undelivered and the address skipped from now on; the same report twice counts once
    for expected in ("bounced", "duplicate"):
        status, body = await _post(http, system, _dsn(ids[bounced], bounced))
        assert (status, body["kind"], body["result"]) == (200, "bounce", expected), body
    # A delay notice (4.x.x) changes nothing
    status, body = await _post(http, system, _dsn(ids[replier], replier, status="4.2.2", action="delayed"))
    assert (body["kind"], body["result"]) == ("delay", "ignored"), body

    # A reply from the recipient counts and is kept (without the quoted message); one from elsewhere does not
    status, body = await _post(http, system, _reply(ids[replier], replier, "Yes, sign me up"))
    assert (status, body["result"]) == (200, "replied"), body
    status, body = await _post(http, system, _reply(ids[replier], new_email("intruder"), "Hijack"))
    assert body["result"] == "not_from_recipient", body
    status, body = await _post(http, system, _reply(ids[stopper], stopper, "STOP"))
    assert body["result"] == "opted_out", body
    # A bounce for a message a person read and answered is stale: it does not undo the reply
    status, body = await _post(http, system, _dsn(ids[replier], replier))
    assert (status, body["kind"], body["result"]) == (200, "bounce", "stale"), body

    # The agent's answer went back by email, in the thread of the reply
    answers = sandbox_smtp.sent_to(replier)[1:]
    assert len(answers) == 1
    answer = answers[0]
    reply_id = f"<reply-{len('Yes, sign me up')}-{ids[replier].strip('<>')}>"
    assert (answer.header("Subject"), answer.header("In-Reply-To")) == ("Re: Hello", reply_id)
    # (References: the reply's own thread, here its In-Reply-To, our message, then the reply: RFC 5322 §3.6.4)
    assert " ".join(answer.header("References").split()) == f"{ids[replier]} {reply_id}"  # (folded when long)
    assert "Welcome aboard!" in answer.message.get_body(preferencelist=("plain",)).get_content()
    assert len(sandbox_smtp.sent_to(stopper)) == 1  # no answer to a STOP

    rows = {r["to_address"]: r for r in await db.fetch(
        "SELECT d.to_address, d.state, d.error, d.replied_at, c.opted_out_email FROM deliveries d"
        " JOIN contacts c ON c.id = d.contact_id WHERE d.campaign_id = $1", campaign_id)}
    assert (rows[bounced]["state"], rows[bounced]["opted_out_email"]) == ("undelivered", True)
    assert rows[bounced]["error"].startswith("bounced 5.1.1")
    assert rows[replier]["replied_at"] is not None
    assert (rows[replier]["state"], rows[replier]["error"]) in {("sent", None), ("delivered", None)}
    assert rows[replier]["opted_out_email"] is False
    assert rows[stopper]["opted_out_email"] is True  # "STOP" as the whole reply
    messages = await db.fetch(
        "SELECT body FROM messages m JOIN deliveries d ON d.id = m.delivery_id"
        " WHERE d.campaign_id = $1 AND m.direction = 'in' ORDER BY m.created_at", campaign_id)
    assert [m["body"] for m in messages] == ["Yes, sign me up", "STOP"]
    answered = await db.fetchval(
        "SELECT body FROM messages m JOIN deliveries d ON d.id = m.delivery_id"
        " WHERE d.campaign_id = $1 AND m.direction = 'out' AND m.author = 'agent'", campaign_id)
    assert answered == "Welcome aboard!"
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    # (a bounce was sent, so it stays in `sent`; `failed` counts what never went out, as in the seed;
    # the STOP is no reply)
    assert (results["sent"], results["replied"], results["failed"]) == (3, 1, 0), results
    assert results["undelivered"] == 1, results  # the bounce


async def test_an_agents_email_answer_is_charged_as_an_email_and_given_back_when_refused(
    http, system, account, sandbox_smtp, db
):
    # Given an email campaign to two addresses, whose agent answers anything with a welcome
    answered, refused = new_email("ann"), new_email("bo")
    rules = {"rules": [], "default_reply": "Welcome aboard!"}
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Riley", "mode": "rules", "settings": rules})
    campaign_id = await launch(http, system, account, agent_id=agent["id"],
                               contacts=[{"email": a} for a in (answered, refused)])
    await finished(http, system, account, campaign_id)
    ids = {a: one_mail(sandbox_smtp, a).header("Message-ID") for a in (answered, refused)}
    price = await db.fetchval("SELECT price_email FROM accounts WHERE id = $1", account.id)
    money = "SELECT balance FROM accounts WHERE id = $1"
    before = await db.fetchval(money, account.id)
    answers = ("SELECT m.body, m.cost, m.error FROM messages m JOIN deliveries d ON d.id = m.delivery_id"
               " WHERE d.to_address = $1 AND m.direction = 'out' AND m.author = 'agent'")

    # When one replies: the answer goes back, charged one email
    status, body = await _post(http, system, _reply(ids[answered], answered, "Tell me more"))
    assert (status, body["result"]) == (200, "replied"), body
    assert len(sandbox_smtp.sent_to(answered)) == 2
    assert [tuple(r) for r in await db.fetch(answers, answered)] == [("Welcome aboard!", price, None)]
    assert await db.fetchval(money, account.id) == before - price

    # When the other replies and the mail server refuses the answer: not sent, and not charged
    sandbox_smtp.script[refused.lower()] = [(550, "5.1.1 mailbox gone")]
    status, body = await _post(http, system, _reply(ids[refused], refused, "Tell me more"))
    assert (status, body["result"]) == (200, "replied"), body
    assert len(sandbox_smtp.sent_to(refused)) == 1
    [(text, cost, error)] = [tuple(r) for r in await db.fetch(answers, refused)]
    assert (text, cost) == ("Welcome aboard!", None)
    assert error.startswith("not sent: "), error
    assert await db.fetchval(money, account.id) == before - price


async def test_an_llm_agent_is_given_the_emails_message_as_the_assistants_before_the_reply(
    http, system, account, sandbox_smtp, agent_endpoint
):
    # Given an email campaign asking a question, whose agent is an LLM
    address = new_email("ann")
    agent_endpoint.answer = "Great, Tuesday at 10 it is."
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {
        "name": "Riley", "instructions": "Book meetings.", "mode": "llm",
        "settings": {"base_url": agent_endpoint.llm_base_url, "model": "small"}})
    assert status == 201, agent
    campaign_id = await launch(http, system, account, agent_id=agent["id"],
                               contacts=[{"email": address, "first_name": "Ann"}],
                               message_template="Can we meet on Tuesday, {{ first_name }}?")
    await finished(http, system, account, campaign_id)
    sent = one_mail(sandbox_smtp, address)
    # When the contact answers the email
    status, body = await _post(http, system, _reply(sent.header("Message-ID"), address, "Yes Tuesday works"))
    assert (status, body["result"]) == (200, "replied"), body
    # Then the LLM read the campaign's message as the assistant's, then the reply as the user's
    [request] = agent_endpoint.seen
    assert request["messages"] == [
        {"role": "system", "content": "Book meetings."},
        {"role": "assistant", "content": "Can we meet on Tuesday, Ann?"},
        {"role": "user", "content": "Yes Tuesday works"},
    ]
    # And its answer went back by email
    [answer] = sandbox_smtp.sent_to(address)[1:]
    assert "Great, Tuesday at 10 it is." in answer.message.get_body(preferencelist=("plain",)).get_content()


async def test_a_reply_of_only_an_opt_out_keyword_opts_out_and_is_no_reply(http, system, account, sandbox_smtp, db):
    # Given an email campaign to two addresses, whose agent answers anything
    stopper, agreer = new_email("bo"), new_email("cy")
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Riley", "mode": "rules", "settings": {"default_reply": "Welcome!"}})
    campaign_id = await launch(http, system, account, agent_id=agent["id"],
                               contacts=[{"email": a} for a in (stopper, agreer)])
    await finished(http, system, account, campaign_id)
    ids = {a: one_mail(sandbox_smtp, a).header("Message-ID") for a in (stopper, agreer)}

    # When one answers only "Stop"
    status, body = await _post(http, system, _reply(ids[stopper], stopper, "Stop"))
    assert (status, body["result"]) == (200, "opted_out"), body
    # Then the address is opted out, and, as an SMS STOP, it is no reply: not counted, not answered
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert (results["replied"], results["reply_rate"], results["average_response_time"]) == (0, "0.0%", None)
    row = await db.fetchrow("SELECT d.replied_at, c.opted_out_email FROM deliveries d"
                            " JOIN contacts c ON c.id = d.contact_id WHERE d.to_address = $1", stopper)
    assert (row["replied_at"], row["opted_out_email"]) == (None, True)
    assert len(sandbox_smtp.sent_to(stopper)) == 1
    # and it counts against the campaign's opt-out rate, as a STOP answering an SMS does
    assert await db.fetchval("SELECT opt_outs FROM campaign_breaker WHERE campaign_id = $1", campaign_id) == 1
    # And the dashboard keeps the message but does not say "replied"
    page = await dashboard_page(system, account.key, f"/campaigns/{campaign_id}")
    assert "2 messages (1 from the contact), last" in page
    # And a bounce after it is stale: a person read the email and wrote back
    status, body = await _post(http, system, _dsn(ids[stopper], stopper))
    assert (body["kind"], body["result"]) == ("bounce", "stale"), body

    # When the other answers only "Yes" (by SMS, a keyword that opts back in): by email it is a reply
    status, body = await _post(http, system, _reply(ids[agreer], agreer, "Yes"))
    assert (status, body["result"]) == (200, "replied"), body
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert (results["replied"], results["reply_rate"]) == (1, "50.0%"), results
    assert results["average_response_time"] is not None
    assert len(sandbox_smtp.sent_to(agreer)) == 2  # answered by the agent


async def test_a_body_that_is_no_email_is_a_422_naming_it(http, system, db):
    # Given the right token, a body that is empty, or text without a header, is no email: refused
    # with why (it was answered 200 "unmatched"), and nothing is recorded
    before = await db.fetchval("SELECT count(*) FROM webhook_events WHERE provider = 'email'")
    for raw in (b"", b"\r\n\r\n", b"hello, is anyone there?"):
        status, body = await _post(http, system, raw)
        assert status == 422, (raw, body)
        assert body["error"]["details"] == [
            {"field": "body", "reason": "expected the raw RFC 5322 email, starting with its header fields"}]
    assert await db.fetchval("SELECT count(*) FROM webhook_events WHERE provider = 'email'") == before
    # an email, even one about nothing we sent, is still taken
    status, body = await _post(http, system, b"From: someone@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
    assert (status, body["result"]) == (200, "unmatched")
