"""Email campaigns end to end: API → scheduler → email dispatcher → SMTP (the sandbox server) →
one-click unsubscribe at the tracker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.providers.base import ProviderError
from shared.providers.smtp_email import Email, SmtpEmail
from shared.sandbox import smtp as sandbox
from shared.sandbox.smtp import ReceivedMail, SandboxSmtp
from shared.unsubscribe import make_token
from tests.conftest import TEST_SECRET_KEY, Account, System
from tests.support import call, verified_email_sender, wait_until

pytestmark = pytest.mark.e2e


def new_email(name: str = "user") -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}@example.com"


async def launch(http, system: System, account: Account, **fields) -> str:
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    assert status == 201, agent
    body = {"name": "Mail", "type": "email", "status": "scheduled", "agent_id": agent["id"],
            "subject": "Hello", "message_template": "Hi", **fields}
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, body)
    assert status == 201, created
    return created["id"]


async def finished(http, system: System, account: Account, campaign_id: str) -> dict:
    async def completed() -> dict | None:
        status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
        assert status == 200, body
        return body if body["status"] == "completed" else None

    return await wait_until(completed, timeout=60, message=f"campaign {campaign_id} completed")


def one_mail(smtp: SandboxSmtp, address: str) -> ReceivedMail:
    mails = smtp.sent_to(address)
    assert len(mails) == 1, (address, len(mails))
    return mails[0]


def unsubscribe_url(mail: ReceivedMail) -> str:
    header = mail.header("List-Unsubscribe") or ""
    assert (header[:1], header[-1:]) == ("<", ">"), header
    return header[1:-1]


async def test_an_email_campaign_sends_each_contact_one_rendered_message(http, system, account, sandbox_smtp, db):
    # Given an email campaign to inline addresses and contact objects with metadata
    plain = [new_email("plain") for _ in range(3)]
    people = [{"email": new_email("ann"), "first_name": "Ann", "plan_name": "<Pro & Co>"},
              {"email": new_email("bob"), "first_name": "Bob", "plan_name": "Basic"}]
    addresses = plain + [p["email"] for p in people]
    campaign_id = await launch(
        http, system, account,
        contacts=plain + people,
        subject="Your {{ plan_name | default('free') }} plan, {{ first_name | default('friend') }}",
        message_template="Hi {{ first_name | default('there') }}, your plan is {{ plan_name | default('free') }}.",
        html_template="<p>Hi {{ first_name | default('there') }}, "
                      "your plan is <b>{{ plan_name | default('free') }}</b>.</p>",
    )

    # When it has run
    results = await finished(http, system, account, campaign_id)

    # Then every contact got exactly one message, rendered for them, with the unsubscribe headers
    assert results["total_contacts"] == results["sent"] == 5
    assert results["failed"] == results["pending"] == 0
    deliveries = {r["to_address"]: r for r in await db.fetch(
        "SELECT id, to_address, contact_id, state, provider_id, attempts FROM deliveries WHERE campaign_id = $1",
        campaign_id)}
    assert set(deliveries) == set(addresses)
    for address in addresses:
        mail, delivery = one_mail(sandbox_smtp, address), deliveries[address]
        person = next((p for p in people if p["email"] == address), None)
        first, plan = (person["first_name"], person["plan_name"]) if person else ("there", "free")
        assert mail.rcpt_tos == (address,)
        assert mail.mail_from == "campaigns@localhost"
        assert mail.header("From") == "campaigns@localhost"
        assert mail.header("To") == address
        assert mail.header("Subject") == f"Your {plan} plan, {person['first_name'] if person else 'friend'}"
        assert mail.part("plain").strip() == f"Hi {first}, your plan is {plan}."
        escaped = plan.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert mail.part("html").strip() == f"<p>Hi {first}, your plan is <b>{escaped}</b>.</p>"
        assert delivery["id"] in mail.header("Message-ID")
        assert (delivery["state"], delivery["attempts"]) == ("sent", 1)
        assert delivery["provider_id"] == mail.header("Message-ID")
        token = make_token(TEST_SECRET_KEY.encode(), account.id, delivery["contact_id"], "email")
        assert unsubscribe_url(mail) == f"{system.tracker_url}/unsubscribe/{token}"
        assert mail.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
        # on one line each, however long (folding them has broken DKIM signatures on some relays)
        assert f"\r\nList-Unsubscribe: <{system.tracker_url}/unsubscribe/{token}>\r\n".encode() in mail.data
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in mail.data
    # and each send is charged at the account's email price
    price = await db.fetchval("SELECT price_email FROM accounts WHERE id = $1", account.id)
    costs = await db.fetch("SELECT cost FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert [r["cost"] for r in costs] == [price] * 5


async def test_an_email_campaigns_html_part_is_in_every_answer_that_shows_it(http, system, account):
    # Given an email draft with an HTML part
    api, headers = system.api_url, account.headers
    _status, agent = await call(http, "POST", api + "/agents", headers, {"name": "Riley"})
    html = "<p>Hi {{ first_name | default('there') }}</p>"
    body = {"name": "Html", "type": "email", "agent_id": agent["id"], "contacts": [new_email("html")],
            "subject": "Hello", "message_template": "Hi", "html_template": html}
    status, created = await call(http, "POST", api + "/campaigns", headers, body)
    assert status == 201, created
    one = f"{api}/campaigns/{created['id']}"

    # Then the create, a read, the list, a change and the launch each show it (as sent, or as changed)
    assert created["html_template"] == html
    _status, read = await call(http, "GET", one, headers)
    assert read["html_template"] == html
    _status, listed = await call(http, "GET", api + "/campaigns?channel=email&limit=200", headers)
    assert next(c for c in listed["data"] if c["id"] == created["id"])["html_template"] == html
    status, changed = await call(http, "PATCH", one, headers, {"html": "<b>{{ first_name | default('you') }}</b>"})
    assert (status, changed["html_template"]) == (200, "<b>{{ first_name | default('you') }}</b>"), changed
    status, launched = await call(http, "POST", one + "/launch", headers)
    assert (status, launched["html_template"]) == (200, changed["html_template"]), launched
    # and one a template filled in shows the template's; a campaign without one shows null
    _status, template = await call(http, "POST", api + "/templates", headers, {
        "name": "T", "channel": "email", "subject": "S", "body": "B", "html": "<i>T</i>"})
    status, templated = await call(http, "POST", api + "/campaigns", headers, {
        "name": "T", "type": "email", "agent_id": agent["id"], "template_id": template["id"]})
    assert (status, templated["html_template"]) == (201, "<i>T</i>"), templated
    status, plain = await call(http, "POST", api + "/campaigns", headers,
                               {**body, "html_template": None, "contacts": [new_email("plain")]})
    assert (status, plain["html_template"]) == (201, None), plain


async def test_an_email_left_sending_goes_again_with_the_same_message_id(http, system, account, sandbox_smtp, db):
    # Given a sent email whose outcome the dispatcher "lost" (as after a crash after DATA)
    address = new_email("lost")
    campaign_id = await launch(http, system, account, contacts=[address], max_retries=2)
    await finished(http, system, account, campaign_id)
    first = one_mail(sandbox_smtp, address)
    await db.execute(
        "UPDATE deliveries SET state = 'sending', sent_at = NULL, provider_id = NULL, "
        "sending_at = now() - interval '1 hour' WHERE campaign_id = $1",
        campaign_id,
    )
    await db.execute("UPDATE runs SET status = 'planned', completed_at = NULL WHERE campaign_id = $1", campaign_id)
    await db.execute("UPDATE campaigns SET status = 'running', completed_at = NULL WHERE id = $1", campaign_id)

    # Then SMTP cannot be asked: it is sent again, once, as the same message (a receiver drops the
    # copy by its Message-ID)
    async def resent() -> bool:
        return len(sandbox_smtp.sent_to(address)) == 2

    await wait_until(resent, timeout=60, message="the lost email sent again")
    await finished(http, system, account, campaign_id)
    again = sandbox_smtp.sent_to(address)
    assert len(again) == 2
    assert again[1].header("Message-ID") == first.header("Message-ID")
    delivery = await db.fetchrow("SELECT state, attempts FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert (delivery["state"], delivery["attempts"]) == ("sent", 2)


async def test_one_click_unsubscribe_opts_out_and_later_campaigns_skip_the_contact(
    http, system, account, sandbox_smtp, db
):
    # Given a campaign that reached two contacts
    leaving, staying = new_email("leaving"), new_email("staying")
    await finished(http, system, account, await launch(http, system, account, contacts=[leaving, staying]))
    url = unsubscribe_url(one_mail(sandbox_smtp, leaving))

    async def opted_out() -> bool:
        return await db.fetchval(
            "SELECT opted_out_email FROM contacts WHERE account_id = $1 AND email = $2", account.id, leaving)

    # When a mail scanner follows the link with GET, nothing changes: it is a page with a button
    async with http.get(url, allow_redirects=False) as response:
        page = await response.text()
        assert response.status == 200
        assert response.content_type == "text/html"
    assert '<form method="post">' in page
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert not await opted_out()

    # When the mail client makes the one-click POST (twice), the contact is opted out, answered 200
    for _ in range(2):
        async with http.post(url, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False) as response:
            assert response.status == 200
        assert await opted_out()

    # Then the next campaign skips that contact and still reaches the other
    second = await launch(http, system, account, contacts=[leaving, staying], subject="Again")
    results = await finished(http, system, account, second)
    assert (results["sent"], results["skipped"]) == (1, 1)
    assert len(sandbox_smtp.sent_to(leaving)) == 1
    assert [m.header("Subject") for m in sandbox_smtp.sent_to(staying)] == ["Hello", "Again"]


async def test_a_550_recipient_fails_at_once_and_a_451_one_is_retried(http, system, account, sandbox_smtp, db):
    # Given one recipient the server refuses for good and one it refuses once for now
    refused, later = new_email("refused"), new_email("later")
    sandbox_smtp.script[refused] = [(550, "5.1.1 mailbox unavailable")]
    sandbox_smtp.script[later] = [(451, "4.3.0 try again later")]

    # When a campaign with quick retries is sent to both from a verified sender address
    news = new_email("news")
    await verified_email_sender(http, system.api_url, account.headers, sandbox_smtp, news)
    campaign_id = await launch(http, system, account, contacts=[refused, later], retry_interval="1s", max_retries=2,
                               from_number=news)
    results = await finished(http, system, account, campaign_id)

    # Then the 550 fails on its first attempt, and the 451 goes out once on its second
    assert (results["sent"], results["failed"]) == (1, 1)
    rows = {r["to_address"]: r for r in await db.fetch(
        "SELECT to_address, state, attempts, error FROM deliveries WHERE campaign_id = $1", campaign_id)}
    assert (rows[refused]["state"], rows[refused]["attempts"]) == ("failed", 1)
    assert "550" in rows[refused]["error"]
    assert (rows[later]["state"], rows[later]["attempts"]) == ("sent", 2)
    assert [code for rcpt, code in sandbox_smtp.rcpt_answers if rcpt == refused] == [550]
    assert [code for rcpt, code in sandbox_smtp.rcpt_answers if rcpt == later] == [451, 250]
    assert sandbox_smtp.sent_to(refused) == []
    mail = one_mail(sandbox_smtp, later)
    assert (mail.mail_from, mail.header("From")) == (news, news)
    assert mail.header("Message-ID").endswith("@example.com>")


async def test_a_bad_unsubscribe_token_is_404_and_changes_nothing(http, system, account, db):
    contact_id = await db.fetchval(
        "INSERT INTO contacts (id, account_id, email) VALUES ($1, $2, $3) RETURNING id",
        "ct_" + uuid.uuid4().hex[:16], account.id, new_email("target"))
    forged = make_token(b"not the service's key", account.id, contact_id, "email")
    valid = make_token(TEST_SECRET_KEY.encode(), account.id, contact_id, "email")
    tampered = valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")
    for token in ("garbage", forged, tampered, make_token(TEST_SECRET_KEY.encode(), account.id, contact_id, "sms")):
        url = f"{system.tracker_url}/unsubscribe/{token}"
        async with http.get(url) as response:
            assert (response.status, response.content_type) == (404, "text/html")
        async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"
    assert not await db.fetchval("SELECT opted_out_email FROM contacts WHERE id = $1", contact_id)


async def test_the_smtp_provider_reuses_reopens_and_sorts_its_failures():
    # Given the sandbox server in this test's loop and a provider with two pooled connections
    relay = SandboxSmtp()
    server = await sandbox.serve(relay, "127.0.0.1", 0)
    provider = SmtpEmail(relay.host, relay.port, username=None, password=None, tls=None, timeout=1, pool_size=2)

    def mail(to: str) -> Email:
        return Email("campaigns@localhost", to, "Hi\r\nBcc: x@example.com", "text", None, "<dlv_1@localhost>",
                     "http://127.0.0.1/unsubscribe/" + "t" * 200)

    try:
        # When six go at once, they share the pool's connections
        await asyncio.gather(*(provider.send_email(mail(f"n{i}@example.com")) for i in range(6)))
        assert len(relay.messages) == 6
        assert len(server.sessions) <= 2
        # a template's line break never becomes a header of its own
        assert relay.messages[0].header("Subject") == "Hi Bcc: x@example.com"
        assert relay.messages[0].header("Bcc") is None

        # When the server drops the idle connections, the next send reopens one
        for session in list(server.sessions):
            session.transport.close()
        await provider.send_email(mail("after-drop@example.com"))
        assert len(relay.sent_to("after-drop@example.com")) == 1

        # When the relay says nothing after the data, the outcome is unknown (never resent blindly)
        relay.response_delay = 2
        with pytest.raises(ProviderError) as silent:
            await provider.send_email(mail("silent@example.com"))
        assert (silent.value.verdict, silent.value.unknown) == ("retry", True)
        relay.response_delay = 0

        # When nothing listens, it is a plain retry: nothing was sent
        await sandbox.stop(server)
        with pytest.raises(ProviderError) as down:
            await provider.send_email(mail("down@example.com"))
        assert (down.value.verdict, down.value.unknown) == ("retry", False)
    finally:
        await provider.close()
        await sandbox.stop(server)


async def test_emails_waiting_for_an_smtp_connection_are_not_sent_twice(http, system, account, sandbox_smtp, db):
    # Given a slow relay (half a second a message), a dispatcher with 4 SMTP connections, and a
    # campaign allowing 40 at once: the last of them would wait 5 s for a connection, past the
    # reconciler's 4 s, if they were claimed (and their clock started) before a connection was free
    addresses = [new_email("wait") for _ in range(40)]
    sandbox_smtp.response_delay = 0.5
    sandbox_smtp.peak_in_flight = 0
    try:
        campaign_id = await launch(http, system, account, contacts=addresses, max_concurrent=40)
        final = await finished(http, system, account, campaign_id)
    finally:
        sandbox_smtp.response_delay = 0.0
    # Then the dispatcher claimed no more than it had connections for, and nothing went twice
    assert sandbox_smtp.peak_in_flight <= 4
    assert {len(sandbox_smtp.sent_to(a)) for a in addresses} == {1}
    assert (final["sent"], final["failed"]) == (40, 0)
    errors = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND error IS NOT NULL", campaign_id
    )
    assert errors == 0  # (none was ever taken for lost and sent again)


async def test_the_sandbox_shows_what_it_received_links_and_unsubscribe_headers(http, system, account, sandbox_smtp):
    """Given the sandbox SMTP server's messages, a newcomer reads them back: the log line names the
    links and List-Unsubscribe, and GET /sandbox/emails on the sandbox's HTTP server lists them whole."""
    from structlog.testing import capture_logs

    from shared.sandbox.twilio import FakeTwilio, bound_port, serve

    # Given an email campaign with a link, and a sender whose verification link was mailed
    address, sender = new_email("reader"), new_email("sender")
    campaign_id = await launch(http, system, account, contacts=[address],
                               message_template="Hi, see https://example.com/offer?a=1&b=2 today.",
                               html_template='<p><a href="https://example.com/offer?a=1&amp;b=2">offer</a></p>')
    await finished(http, system, account, campaign_id)
    status, added = await call(http, "POST", system.api_url + "/senders", account.headers, {"email": sender})
    assert status in (200, 201), added
    runner = await serve(FakeTwilio("ACx", "token", mailbox=sandbox_smtp), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}/sandbox/emails"
    try:
        # When the newcomer lists the messages sent to each
        async with http.get(base, params={"to": address}) as response:
            assert response.status == 200
            [mail] = (await response.json())["data"]
        async with http.get(base, params={"to": sender}) as response:
            [verification] = (await response.json())["data"]
        async with http.get(base, params={"limit": "1"}) as response:
            latest = (await response.json())["data"]
        async with http.get(base, params={"limit": "0"}) as response:  # refused as the API refuses
            assert response.status == 422
            refused = (await response.json())["error"]["details"]
            assert refused == [{"field": "limit", "reason": "a number from 1 to 200"}]
        # the sandbox's own inbound text: a body that misses a field is named, and it has a health check
        inbound = base.replace("/sandbox/emails", "/sandbox/inbound")
        for body, field in (({"body": "hi"}, "from"), ({"from": "+14155550100"}, "body"), ([], "body")):
            async with http.post(inbound, json=body) as response:
                assert response.status == 422, body
                assert (await response.json())["error"]["details"][0]["field"] == field
        async with http.get(base.replace("/sandbox/emails", "/healthz")) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
    finally:
        await runner.cleanup()

    # Then each comes whole: headers, text, the unsubscribe header and the links
    assert mail["to"] == [address]
    assert mail["subject"] == "Hello"
    assert mail["list_unsubscribe"].startswith(f"<{system.tracker_url}/unsubscribe/")
    assert mail["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert ["List-Unsubscribe", mail["list_unsubscribe"]] in mail["headers"]
    assert mail["links"] == ["https://example.com/offer?a=1&b=2"]
    assert "https://example.com/offer" in mail["text"]
    assert 'href="https://example.com/offer?a=1&amp;b=2"' in mail["html"]
    assert len(verification["links"]) == 1
    assert f"{system.tracker_url}/senders/verify/" in verification["links"][0]
    assert verification["links"][0] in verification["text"]
    assert len(latest) == 1
    assert latest[0]["email_message_id"] == sandbox_smtp.messages[-1].header("Message-ID")

    # And the log line of each message names its links and List-Unsubscribe
    relay = SandboxSmtp()
    server = await sandbox.serve(relay, "127.0.0.1", 0)
    provider = SmtpEmail(relay.host, relay.port, username=None, password=None, tls=None, timeout=5, pool_size=1)
    try:
        with capture_logs() as logs:
            await provider.send_email(Email("campaigns@localhost", "ann@example.com", "Verify", "Open "
                                            "http://127.0.0.1:8081/senders/verify/abc.", None, "<m1@localhost>",
                                            "http://127.0.0.1:8081/unsubscribe/tok"))
    finally:
        await provider.close()
        await sandbox.stop(server)
    [line] = [e for e in logs if e["event"] == "sandbox.email"]
    assert line["links"] == ["http://127.0.0.1:8081/senders/verify/abc"]
    assert line["list_unsubscribe"] == "<http://127.0.0.1:8081/unsubscribe/tok>"
    assert line["to"] == ["ann@example.com"]
    assert line["email_message_id"] == "<m1@localhost>"
