"""The dashboard over plain HTTP: sessions and their cookies, CSRF on every form, the buttons'
answers, and its live stream ending when the API stops (the browser tests are beside it)."""

from __future__ import annotations

import asyncio
import html
import re
import time
from html.parser import HTMLParser

import aiohttp
import pytest

from tests.conftest import make_account
from tests.support import Service, call, dashboard_page, free_port, new_phone, results_when, signed_in, wait_until

pytestmark = pytest.mark.e2e

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _token(session: aiohttp.ClientSession, url: str, **kwargs) -> str:
    """The CSRF token of the form on the page at `url`."""
    async with session.get(url, **kwargs) as response:
        found = _TOKEN.search(await response.text())
    assert found, "no form on the page"
    return found[1]


async def _post(session: aiohttp.ClientSession, page_url: str, url: str, **fields: str) -> aiohttp.ClientResponse:
    """Press a button of the page at `page_url`: its form posted with the page's token."""
    token = await _token(session, page_url)
    async with session.post(url, data={**fields, "csrf_token": token}, allow_redirects=False) as response:
        await response.read()
        return response


async def _refused(session: aiohttp.ClientSession, url: str, **fields: str) -> tuple[int, str]:
    """Submit the form of the page at `url` with `fields`: the status and the page it answers (a
    refused form comes back with its errors)."""
    response = await _post(session, url, url, **fields)
    return response.status, await response.text()


async def test_a_person_sees_progress_and_pauses_with_a_button(http, system, account, db):
    async with http.get(system.api_url + "/dashboard", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/dashboard/login"
    guest = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        token = await _token(guest, system.api_url + "/dashboard/login")
        wrong = {"api_key": "sk_wrong", "csrf_token": token}
        async with guest.post(system.api_url + "/dashboard/login", data=wrong) as response:
            assert response.status == 401
            assert "not valid" in await response.text()
        # Sign-in too needs the form's token: a page elsewhere cannot sign a browser in.
        no_token = {"api_key": account.key}
        async with guest.post(system.api_url + "/dashboard/login", data=no_token, allow_redirects=False) as response:
            assert response.status == 403
            assert "campaigns_session" not in response.cookies
    finally:
        await guest.close()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "Spring <sale>", "agent_id": agent["id"], "type": "sms",
                                "contacts": [new_phone()], "message_template": "hi",
                                "schedule": "2031-01-01T09:00:00Z"})
    session = await signed_in(system, account.key)
    try:
        async with session.get(system.api_url + "/dashboard") as response:
            page = await response.text()
        assert "Spring &lt;sale&gt;" in page  # escaped
        url = f"{system.api_url}/dashboard/campaigns/{body['id']}"
        async with session.post(url + "/launch") as response:  # no token: refused, nothing changes
            assert response.status == 403
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "draft"
        response = await _post(session, url, url + "/launch")
        assert response.status == 303
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "scheduled"
        await _post(session, url, url + "/pause")
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "paused"
        async with session.get(url) as response:
            assert ">Resume<" in await response.text()
        token = await _token(session, url)
        async with session.post(url + "/pause", data={"csrf_token": token}) as response:  # not now: the reason
            assert response.status == 409
            assert "only a scheduled or running campaign can be paused" in await response.text()
        # Cancel asks first (a page, when the browser runs no script): nothing happens until confirmed.
        async with session.post(url + "/cancel", data={"csrf_token": token}) as response:
            assert "cannot be undone" in await response.text()
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "paused"
        other = await make_account(db)
        other_session = await signed_in(system, other.key)
        async with other_session.get(url) as response:
            assert response.status == 404
        other_token = await _token(other_session, system.api_url + "/dashboard")
        confirmed = {"csrf_token": other_token, "confirmed": "yes"}
        async with other_session.post(url + "/cancel", data=confirmed) as response:
            assert response.status == 404
        await other_session.close()
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "paused"
    finally:
        await session.close()


async def test_the_browser_holds_a_session_token_never_the_key(http, system, account, db):
    session = await signed_in(system, account.key)
    try:
        cookies = {c.key: c for c in session.cookie_jar}
        assert set(cookies) == {"campaigns_session"}
        token = cookies["campaigns_session"].value
        assert account.key not in token
        assert cookies["campaigns_session"]["httponly"]
        assert cookies["campaigns_session"]["samesite"] == "Strict"
        stored = await db.fetch("SELECT token_hash FROM dashboard_sessions")
        assert token.encode() not in [bytes(r["token_hash"]) for r in stored]  # only a hash is kept
        async with session.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 200
        # Signing out ends the session: the same cookie no longer opens anything.
        response = await _post(session, system.api_url + "/dashboard", system.api_url + "/dashboard/logout")
        assert response.status == 303
        replay = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        replay.cookie_jar.update_cookies({"campaigns_session": token})
        async with replay.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/login"
        await replay.close()
    finally:
        await session.close()
    # Revoking the key ends its sessions too.
    other = await make_account(db)
    signed = await signed_in(system, other.key)
    try:
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE account_id = $1", other.id)
        async with signed.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 303
    finally:
        await signed.close()


async def test_the_cookies_are_secure_behind_a_tls_proxy(system, account):
    proxied = {"X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:  # cookies by hand
        async with session.get(system.api_url + "/dashboard/login", headers=proxied) as response:
            assert "Secure" in response.headers["Set-Cookie"]  # the sign-in form's own token
            token = _TOKEN.search(await response.text())[1]
        signing_in = {**proxied, "Cookie": f"campaigns_csrf={token}"}
        form = {"api_key": account.key, "csrf_token": token}
        async with session.post(
            system.api_url + "/dashboard/login", headers=signing_in, data=form, allow_redirects=False
        ) as response:
            assert response.status == 303
            cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("campaigns_session="))
        for part in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/dashboard"):
            assert part in cookie
        async with session.get(system.api_url + "/dashboard/login") as response:  # plain HTTP: not Secure
            assert "Secure" not in response.headers["Set-Cookie"]
            assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


async def test_the_live_stream_sends_the_figures_and_ends_when_the_api_stops(http, system, account, tmp_path):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "Streamed", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                                "message_template": "hi", "schedule": "2031-01-01T09:00:00Z", "status": "scheduled"})
    port = free_port()
    api = Service("api-stream", ["api"], {**system.env, "CAMPAIGNS_API_PORT": str(port)}, tmp_path)
    api.start()
    url = f"http://127.0.0.1:{port}"
    try:
        async def up() -> bool:
            try:
                async with http.get(url + "/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(up, timeout=30, message="the second API")
        session = await signed_in(type("S", (), {"api_url": url})(), account.key)
        try:
            async with session.get(f"{url}/dashboard/campaigns/{body['id']}/live") as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                first = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
                assert first.startswith(b"event: update\ndata: ")
                assert b"scheduled" in first
                assert b"figures" in first
                started = time.monotonic()
                api.process.terminate()  # SIGTERM: the stream ends at once, not after the 60 s shutdown timeout
                await asyncio.wait_for(stream.content.read(), 10)
                assert stream.content.at_eof()
            assert api.process.wait(10) == 0
            assert time.monotonic() - started < 5
        finally:
            await session.close()
    finally:
        api.stop()
    assert "http.unhandled" not in api.output()



def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_person_issues_and_revokes_api_keys_on_the_account_page(http, system, db):
    account = await make_account(db)
    page_url = system.api_url + "/dashboard/account"
    keys_url = page_url + "/keys"
    session = await signed_in(system, account.key)
    try:
        async with session.get(page_url) as response:
            html = await response.text()
        assert f'<code>{account.key[:8]}…</code> <span class="badge verified">this session' in html
        assert account.key not in html  # a key is never shown again

        # Issued: shown this once, usable at once, only its hash kept.
        response = await _post(session, page_url, keys_url, intent="create")
        assert response.status == 201
        issued = re.search(r'id="new-key" type="text" readonly value="(sk_[^"]+)"', await response.text())
        assert issued, "the new key is not on the page"
        new_key = issued[1]
        assert (await call(http, "GET", system.api_url + "/account", _bearer(new_key)))[0] == 200
        stored = await db.fetch("SELECT key_hash FROM api_keys WHERE account_id = $1", account.id)
        assert len(stored) == 2
        assert new_key.encode() not in [bytes(r["key_hash"]) for r in stored]
        async with session.get(page_url) as response:
            assert new_key not in await response.text()  # the next page no longer shows it

        # Another account's key, and a prefix that is no live key: not found, nothing revoked.
        other = await make_account(db)
        for prefix in (other.key[:8], "sk_nope0"):
            response = await _post(session, page_url, keys_url, intent="revoke", prefix=prefix)
            assert response.status == 404
        revoked = "SELECT count(*) FROM api_keys WHERE account_id = ANY($1) AND revoked_at IS NOT NULL"
        assert await db.fetchval(revoked, [account.id, other.id]) == 0

        # Revoking the key this session signed in with ends the session; the new key goes on.
        response = await _post(session, page_url, keys_url, intent="revoke", prefix=account.key[:8])
        assert (response.status, response.headers["Location"]) == (303, "/dashboard/login")
        assert (await call(http, "GET", system.api_url + "/account", _bearer(account.key)))[0] == 401
        assert (await call(http, "GET", system.api_url + "/account", _bearer(new_key)))[0] == 200
        async with session.get(page_url, allow_redirects=False) as response:
            assert response.status == 303
    finally:
        await session.close()

    # The last live key is never revoked: the page says why, and the key goes on.
    session = await signed_in(system, new_key)
    try:
        form = {"intent": "revoke", "prefix": new_key[:8], "csrf_token": await _token(session, page_url)}
        async with session.post(keys_url, data=form) as response:
            assert response.status == 409
            html = await response.text()
        assert "last live key: issue another one first" in html
        assert f"<code>{account.key[:8]}…</code>" in html
        assert "revoked" in html
        assert (await call(http, "GET", system.api_url + "/account", _bearer(new_key)))[0] == 200
    finally:
        await session.close()


async def test_a_wall_clock_schedule_is_shown_in_the_zone_it_is_read_in(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    drafts = {}
    for zone in ("America/New_York", "contact_local"):
        status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                  {"name": f"wall {zone}", "type": "sms", "agent_id": agent["id"],
                                   "contacts": [new_phone()], "message_template": "Hi",
                                   "scheduled_at": "2027-03-10T09:00:00", "timezone": zone})
        assert status == 201, body
        drafts[zone] = body["id"]
    session = await signed_in(system, account.key)
    try:
        shown = {}
        for zone, campaign_id in drafts.items():
            async with session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}") as response:
                shown[zone] = await response.text()
        async with session.get(system.api_url + "/dashboard") as response:
            listed = await response.text()
    finally:
        await session.close()
    new_york = '<time datetime="2027-03-10T09:00">2027-03-10 09:00 (America/New_York)</time>'
    everyones = '<time datetime="2027-03-10T09:00">2027-03-10 09:00 (each contact&#39;s local time)</time>'
    assert new_york in shown["America/New_York"]
    assert "each contact" not in shown["America/New_York"]
    assert everyones in shown["contact_local"]
    assert new_york in listed
    assert everyones in listed


async def test_a_campaign_cancelled_as_a_draft_shows_no_progress(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "never sent", "type": "sms", "agent_id": agent["id"],
                                "contacts": [new_phone()], "message_template": "Hi"})
    assert status == 201, draft
    status, body = await call(http, "POST", f"{system.api_url}/campaigns/{draft['id']}/cancel", account.headers)
    assert (status, body["status"]) == (200, "cancelled"), body
    session = await signed_in(system, account.key)
    try:
        async with session.get(system.api_url + "/dashboard") as response:
            listed = await response.text()
        async with session.get(f"{system.api_url}/dashboard/campaigns/{draft['id']}") as response:
            shown = await response.text()
    finally:
        await session.close()
    assert "never sent" in listed
    assert 'aria-label="Progress of never sent"' not in listed  # not 100% done: nothing was ever sent
    assert 'aria-label="Progress of never sent"' not in shown


async def test_a_conversation_shows_each_message_before_the_answer_it_caused(http, system, account, db, fake_twilio):
    """Given a contact texting HELP then STOP (each answered in the transaction that records it),
    the conversation page lists each message before its answer: the answer is written later (its
    own time), and a message and answer of the same instant (rows from before) still read in first."""
    phone = new_phone()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "order", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                "message_template": "Reply HELP for help", "status": "scheduled"})

    await results_when(http, system.api_url, account.headers, body["id"], lambda r: r["delivered"] == 1)
    fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    for text in ("HELP", "stop"):
        future = asyncio.run_coroutine_threadsafe(
            fake_twilio.inbound(phone, "+15005550006", text), fake_twilio.thread.loop)
        assert await asyncio.wrap_future(future)
    rows = await db.fetch("SELECT direction, body, created_at FROM messages WHERE campaign_id = $1", body["id"])
    by_body = {r["body"]: r for r in rows}
    assert by_body["HELP"]["created_at"] < by_body["Reply STOP to unsubscribe, START to resubscribe."]["created_at"]
    assert by_body["stop"]["created_at"] < by_body[
        "You have been unsubscribed and will receive no more messages. Reply START to resubscribe."]["created_at"]
    # A message and its answer of one instant (as written before migration 0023), the answer's id first.
    contact_id = await db.fetchval("SELECT contact_id FROM messages WHERE campaign_id = $1 LIMIT 1", body["id"])
    await db.execute(
        "INSERT INTO messages (id, account_id, contact_id, campaign_id, channel, direction, body, author, created_at)"
        " VALUES ('message_zz_order', $1, $2, $3, 'sms', 'in', 'INFO', 'contact', now() + interval '1 minute'),"
        "        ('message_00_order', $1, $2, $3, 'sms', 'out', 'Here is your INFO answer', 'system',"
        "         now() + interval '1 minute')",
        account.id, contact_id, body["id"])
    page = await dashboard_page(system, account.key, f"/campaigns/{body['id']}/conversations/{contact_id}")
    order = [page.index(text) for text in (
        "Reply HELP for help", ">HELP<", "Reply STOP to unsubscribe, START to resubscribe.", ">stop<",
        "You have been unsubscribed", ">INFO<", "Here is your INFO answer")]
    assert order == sorted(order)


async def test_the_conversations_list_counts_replies_as_the_results_do(http, system, account, db, fake_twilio):
    """Given a contact who answers a message and then texts HELP, STOP and START, the campaign page
    lists their conversation as replied (once, as the results count it), the keywords among the
    messages from the contact but not counted as replies."""
    phone = new_phone()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "counts", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                "message_template": "Hello", "status": "scheduled"})
    await results_when(http, system.api_url, account.headers, body["id"], lambda r: r["delivered"] == 1)
    fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    for text in ("Sounds good", "HELP", "STOP", "START"):  # (a reply's answer is no TwiML: the agent's)
        future = asyncio.run_coroutine_threadsafe(
            fake_twilio.inbound(phone, "+15005550006", text), fake_twilio.thread.loop)
        await asyncio.wrap_future(future)
    results = await results_when(http, system.api_url, account.headers, body["id"], lambda r: r["replied"] == 1)
    assert results["replied"] == 1
    incoming = await db.fetchval(
        "SELECT count(*) FROM messages WHERE campaign_id = $1 AND direction = 'in'", body["id"])
    assert incoming == 4
    page = await dashboard_page(system, account.key, f"/campaigns/{body['id']}")
    # the messages the conversation shows: the campaign's send and every message said since
    said = await db.fetchval("SELECT count(*) FROM messages WHERE campaign_id = $1", body["id"])
    assert f"{said + 1} messages (4 from the contact), replied, last" in page
    assert "replies" not in page.split('id="conversations"')[1].split('id="deliveries"')[0]


class _Fields(HTMLParser):
    """The fields a browser would submit from a page's campaign form, as typed or shown."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name") and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.append((a["name"], a.get("value", "on")))
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, self._text))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data


async def _form_fields(session: aiohttp.ClientSession, url: str) -> list[tuple[str, str]]:
    """The form on the page at `url`, as a browser would submit it unchanged (no button pressed)."""
    async with session.get(url) as response:
        assert response.status == 200
        parser = _Fields()
        parser.feed(await response.text())
    return [(name, value) for name, value in parser.fields if name != "preview_contact"]


async def _submit(session: aiohttp.ClientSession, url: str, fields: list[tuple[str, str]]) -> tuple[int, str, str]:
    """Post a form: its status, page and where it sent the browser."""
    async with session.post(url, data=fields, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Location", "")


async def test_a_voice_campaign_with_a_weekly_recurrence_is_made_seen_and_kept_by_the_form(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Caller"})
    phone = new_phone()
    session = await signed_in(system, account.key)
    new = system.api_url + "/dashboard/campaigns/new"
    try:
        # Given the new campaign form, filled in for a voice campaign that repeats weekly
        form = await _form_fields(session, new)
        typed = {
            "name": "Renewal calls", "channel": "voice", "agent_id": agent["id"], "contacts": phone,
            "voice_opening_message": "Hello {{first_name}}, this is about your plan.",
            "voice_instructions": "Be brief; offer a callback.", "voice_call_duration_limit": "120",
            "voice_machine_detection": "voicemail", "voice_voicemail_message": "Please call us back.",
            "voice_voice": "Polly.Joanna", "voice_language": "en-US",
            "scheduled_at": "2027-03-10T09:00", "timezone": "Europe/Paris",
            "recurrence_frequency": "weekly", "recurrence_interval": "2", "recurrence_until": "2027-06-30",
            "recurrence_count": "5", "breaker_failure_rate": "0.3", "breaker_min_sends": "20",
            "max_concurrent": "1", "max_retries": "2", "start_hour": "9", "end_hour": "17",
        }  # fmt: skip
        fields = [(k, v) for k, v in form if k not in typed and k != "recurrence_weekdays"] + list(typed.items())
        fields += [("recurrence_weekdays", "monday"), ("recurrence_weekdays", "wednesday")]
        # When it is saved
        status, _page, location = await _submit(session, new, fields)
        assert status == 303, _page
        campaign_id = location.rsplit("/", 1)[-1]
        # Then the API holds what was typed
        status, stored = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
        assert status == 200, stored
        assert stored["channel"] == "voice"
        # (the numbers typed reach the API, which takes JSON numbers only, as numbers)
        assert (stored["max_concurrent"], stored["max_retries"]) == (1, 2)
        assert (stored["sending_window"]["start_hour"], stored["sending_window"]["end_hour"]) == (9, 17)
        assert stored["voice"] == {
            "opening_message": "Hello {{first_name}}, this is about your plan.",
            "instructions": "Be brief; offer a callback.", "call_duration_limit": 120,
            "machine_detection": "voicemail", "voicemail_message": "Please call us back.",
            "voice": "Polly.Joanna", "language": "en-US",
        }  # fmt: skip
        assert stored["recurrence"] == {
            "frequency": "weekly", "interval": 2, "weekdays": ["monday", "wednesday"], "month_day": None,
            "until": "2027-06-30", "count": 5,
        }  # fmt: skip
        assert stored["circuit_breaker"] == {
            "failure_rate": 0.3, "bounce_rate": 0.1, "opt_out_rate": 0.05, "min_sends": 20, "enabled": True,
        }  # fmt: skip

        # And the campaign's page says them in words
        async with session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}") as response:
            page = await response.text()
        for line in (
            "<li>At most 1 send at once.</li>",
            "<li>A failed send is tried again up to 2 times, 5 min apart.</li>",
            "<li>Repeats every 2 weeks on Monday, Wednesday, until 2027-06-30, 5 runs at most.</li>",
            "<li>Opens with: “Hello {{first_name}}, this is about your plan.”</li>",
            "<li>A call lasts at most 2 min.</li>",
            "<li>Answering machines are detected (voicemail); on one it leaves a voicemail.</li>",
        ):
            assert line in page, line

        # And the edit form shows each saved value in its field
        edit = f"{system.api_url}/dashboard/campaigns/{campaign_id}/edit"
        shown = dict(await _form_fields(session, edit))
        for name, value in typed.items():
            if name not in ("contacts", "channel", "agent_id"):
                assert shown[name] == value, name
        weekdays = [v for k, v in await _form_fields(session, edit) if k == "recurrence_weekdays"]
        assert weekdays == ["monday", "wednesday"]

        # And saving it unchanged changes nothing
        status, _page, _location = await _submit(session, edit, await _form_fields(session, edit))
        assert status == 303, _page
        _status, again = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
        assert {**again, "updated_at": None} == {**stored, "updated_at": None}

        # And the form changes them: a daily rule without an end, the breaker off, no voicemail
        changed = [
            (k, v) for k, v in await _form_fields(session, edit)
            if not k.startswith(("recurrence_", "breaker_enabled", "voice_machine", "voice_voicemail"))
        ] + [("recurrence_frequency", "daily"), ("breaker_enabled", "off")]  # fmt: skip
        status, _page, _location = await _submit(session, edit, changed)
        assert status == 303, _page
        _status, after = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
        assert after["recurrence"] == {
            "frequency": "daily", "interval": 1, "weekdays": [], "month_day": None, "until": None, "count": None,
        }  # fmt: skip
        assert after["circuit_breaker"]["enabled"] is False
        assert after["circuit_breaker"]["min_sends"] == 20
        assert "machine_detection" not in after["voice"]
        assert after["voice"]["call_duration_limit"] == 120
    finally:
        await session.close()


async def test_the_apis_errors_on_voice_and_recurrence_show_next_to_their_fields_with_the_input_kept(
    http, system, account, db
):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Caller"})
    session = await signed_in(system, account.key)
    new = system.api_url + "/dashboard/campaigns/new"
    try:
        # Given a voice campaign whose call limit is 0 and whose repeats end before its first run
        typed = {
            "name": "Too short", "channel": "voice", "agent_id": agent["id"], "contacts": new_phone(),
            "voice_opening_message": "Hello", "voice_call_duration_limit": "0",
            "scheduled_at": "2027-03-10T09:00", "timezone": "Europe/Paris",
            "recurrence_frequency": "weekly", "recurrence_until": "2027-03-01", "breaker_min_sends": "0",
        }  # fmt: skip
        fields = [(k, v) for k, v in await _form_fields(session, new) if k not in typed] + list(typed.items())
        # When it is saved
        status, page, _location = await _submit(session, new, fields)
        # Then the form comes back with the API's reasons next to each field, and what was typed
        assert status == 422, page
        for name, reason, value in [
            ("voice_call_duration_limit", "10 to 14400", "0"),
            ("recurrence_until", "is before the first run (2027-03-10)", "2027-03-01"),
            ("breaker_min_sends", "must be at least 1", "0"),
        ]:
            block = page[page.index(f'<label for="f-{name}">') : page.index(f'id="f-{name}"')]
            assert reason in block.split(f'id="{name}-error"', 1)[1], (name, block)
            assert re.search(rf'id="f-{name}" name="{name}" type="[a-z]+" value="{re.escape(value)}"', page), name
        assert 'aria-invalid="true"' in page
        assert '<details open><summary>Advanced: the circuit breaker' in page
        assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == 0
    finally:
        await session.close()


async def test_an_api_made_campaigns_voice_recurrence_and_breaker_survive_the_edit_form(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Caller"})
    status, made = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "From the API", "type": "voice", "agent_id": agent["id"], "contacts": [new_phone()],
        "scheduled_at": "2027-01-31T10:00:00Z", "opening_message": "Hi there",
        "voice": {"language": "fr-FR", "machine_detection": "off", "call_duration_limit": 60},
        "recurrence": {"frequency": "monthly", "month_day": 31, "count": 3},
        "circuit_breaker": {"opt_out_rate": 0.2, "enabled": True},
    })  # fmt: skip
    assert status == 201, made
    _status, stored = await call(http, "GET", f"{system.api_url}/campaigns/{made['id']}", account.headers)
    session = await signed_in(system, account.key)
    edit = f"{system.api_url}/dashboard/campaigns/{made['id']}/edit"
    try:
        status, page, _location = await _submit(session, edit, await _form_fields(session, edit))
    finally:
        await session.close()
    assert status == 303, page
    _status, again = await call(http, "GET", f"{system.api_url}/campaigns/{made['id']}", account.headers)
    assert {**again, "updated_at": None} == {**stored, "updated_at": None}
    assert again["voice"] == {
        "opening_message": "Hi there", "language": "fr-FR", "machine_detection": "off", "call_duration_limit": 60,
    }  # fmt: skip


def _field(page: str, name: str) -> tuple[str, str]:
    """A form field of `page` (an input or a text area): the errors shown next to it, and the value in it."""
    block = page[page.index(f'<label for="f-{name}">') : page.index(f'id="f-{name}"')]
    errors = block.split(f'id="{name}-error"', 1)[1] if f'id="{name}-error"' in block else ""
    value = re.search(rf'id="f-{name}" name="{name}" type="[a-z]+" value="([^"]*)"', page) or re.search(
        rf'<textarea id="f-{name}" name="{name}"[^>]*>([^<]*)</textarea>', page
    )
    assert value, f"no field {name}"
    return errors, html.unescape(value[1])


async def test_an_import_refused_for_its_country_shows_the_form_again_as_it_was_filled_in(http, system, account, db):
    _status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "Leads"})
    url = system.api_url + "/dashboard/contacts/import"
    session = await signed_in(system, account.key)
    try:
        # Given the import form with a group chosen, a country that is not two letters, and a file
        form = aiohttp.FormData()
        form.add_field("csrf_token", await _token(session, url))  # first: the upload is read as it streams in
        form.add_field("group_id", group["id"])
        form.add_field("country", "USA")
        form.add_field("file", b"phone\n4155550100\n", filename="contacts.csv", content_type="text/csv")
        # When it is sent
        async with session.post(url, data=form) as response:
            status, page = response.status, await response.text()
    finally:
        await session.close()
    # Then the reason is next to the country, and the form is as it was filled in
    assert status == 422, page
    errors, country = _field(page, "country")
    assert "USA" in errors
    assert country == "USA"
    assert f'<option value="{group["id"]}" selected>' in page
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0


async def test_a_sender_refused_shows_the_address_typed_with_the_reason(system, account, fake_twilio):
    url = system.api_url + "/dashboard/senders"
    session = await signed_in(system, account.key)
    try:
        # A phone nobody owns and something that is no address: each refused, each kept in its field
        for typed, reason in ((new_phone(), "neither bought"), ("abc", "not a valid")):
            status, page = await _refused(session, url, intent="add", address=typed)
            assert status == 422, page
            errors, address = _field(page, "address")
            assert reason in errors, errors
            assert address == typed
        # and once added, the field is empty again for the next one
        owned = new_phone()
        fake_twilio.owned_numbers.add(owned)
        response = await _post(session, url, url, intent="add", address=owned)
        assert response.status == 303
        async with session.get(url) as response:
            assert _field(await response.text(), "address") == ("", "")
    finally:
        await session.close()


async def test_an_account_zone_refused_is_shown_as_typed_not_as_saved(http, system, account):
    url = system.api_url + "/dashboard/account"
    session = await signed_in(system, account.key)
    try:
        # Given an account whose default zone is Asia/Kolkata, with quiet hours respected
        form = {"default_timezone": "Asia/Kolkata", "quiet_hours": "on"}
        assert (await _post(session, url, url, **form)).status == 303
        # When a zone that is none is saved, with quiet hours unticked
        status, page = await _refused(session, url, default_timezone="Mars/Base")
        # Then the reason is next to the zone typed, the box as it was left, and nothing saved
        assert status == 422, page
        errors, zone = _field(page, "default_timezone")
        assert "not an IANA time zone name" in errors
        assert zone == "Mars/Base"
        assert 'name="quiet_hours">' in page  # unticked, as it was left
        _status, stored = await call(http, "GET", system.api_url + "/account", account.headers)
        assert (stored["default_timezone"], stored["quiet_hours"]) == ("Asia/Kolkata", True)
        # and the page shows the saved zone again when next opened
        async with session.get(url) as response:
            assert _field(await response.text(), "default_timezone") == ("", "Asia/Kolkata")
    finally:
        await session.close()


async def test_a_contact_change_refused_shows_what_was_typed_not_what_is_saved(http, system, account, db):
    phone = new_phone()
    status, contact = await call(http, "POST", system.api_url + "/contacts", account.headers,
                                 {"first_name": "Ann", "phone": phone, "email": "ann@example.com"})  # fmt: skip
    assert status == 201, contact
    url = f"{system.api_url}/dashboard/contacts/{contact['id']}"
    async with await signed_in(system, account.key) as session:
        # When the contact is saved renamed Bob, with an email that is none, a field and a box ticked
        typed = {"first_name": "Bob", "phone": phone, "email": "not-an-email", "metadata": "plan: gold",
                 "opted_out_sms": "on"}  # fmt: skip
        status, page = await _refused(session, url, **typed)
    # Then the reason is next to the email typed, the rest of the form as it was filled in, and nothing saved
    assert status == 422, page
    errors, email = _field(page, "email")
    assert "not a valid email" in errors, errors
    assert email == "not-an-email"
    assert _field(page, "first_name") == ("", "Bob")
    assert _field(page, "metadata") == ("", "plan: gold")
    assert 'name="opted_out_sms" checked>' in page
    stored = await db.fetchrow("SELECT first_name, email, opted_out_sms FROM contacts WHERE id = $1", contact["id"])
    assert tuple(stored) == ("Ann", "ann@example.com", False)


async def test_a_group_change_refused_keeps_the_name_or_members_typed(http, system, account, db):
    _status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "Leads"})
    url = f"{system.api_url}/dashboard/groups/{group['id']}"
    session = await signed_in(system, account.key)
    try:
        # A name too long: refused beside the name typed, the group's heading still its saved name
        long_name = "Leads " + "x" * 200
        status, page = await _refused(session, url, intent="rename", name=long_name)
        assert status == 422, page
        errors, name = _field(page, "name")
        assert "at most 200" in errors, errors
        assert name == long_name
        assert "<h1>Leads</h1>" in page
        assert _field(page, "members") == ("", "")
        # More contacts than one request may name: refused beside the box, which keeps them
        members = "\n".join(f"+1415{n:07d}" for n in range(10_001))
        status, page = await _refused(session, url, intent="add", members=members)
        assert status == 422, page
        errors, typed = _field(page, "members")
        assert "at most 10000" in errors, errors
        assert typed == members
        assert _field(page, "name") == ("", "Leads")
    finally:
        await session.close()
    assert await db.fetchval("SELECT name FROM contact_groups WHERE id = $1", group["id"]) == "Leads"


async def test_a_new_group_refused_keeps_the_name_typed(system, account, db):
    url = system.api_url + "/dashboard/groups"
    async with await signed_in(system, account.key) as session:
        status, page = await _refused(session, url, name="   ")
    assert status == 422, page
    errors, name = _field(page, "name")
    assert "must not be empty" in errors, errors
    assert name == "   "
    assert await db.fetchval("SELECT count(*) FROM contact_groups WHERE account_id = $1", account.id) == 0


async def test_a_sender_rate_refused_shows_the_rate_typed_with_the_reason_in_its_row(system, account, db, fake_twilio):
    url = system.api_url + "/dashboard/senders"
    owned, other = new_phone(), new_phone()
    fake_twilio.owned_numbers.update({owned, other})
    session = await signed_in(system, account.key)
    try:
        # Given two senders, the first sending 2 a second
        for address in (owned, other):
            assert (await _post(session, url, url, intent="add", address=address)).status == 303
        assert (await _post(session, url, url, intent="rate", address=owned, max_per_second="2")).status == 303
        # When its rate is set to 0
        status, page = await _refused(session, url, intent="rate", address=owned, max_per_second="0")
        # Then its row's field holds the 0 typed, the reason beside it, and the rate saved is still 2
        assert status == 422, page
        errors, rate = _field(page, "max_per_second")
        assert "must be more than 0" in errors, errors
        assert rate == "0"
        row = next(r for r in page.split("<tr>") if f'name="address" value="{owned}"' in r)
        assert 'id="f-max_per_second"' in row
        assert 'aria-invalid="true"' in row
        assert page.count('aria-invalid="true"') == 1  # the other row's field is as saved
        assert '<a href="#f-max_per_second">' in page  # the summary links to it
        stored = "SELECT max_per_second FROM sender_identities WHERE account_id = $1 AND address = $2"
        assert await db.fetchval(stored, account.id, owned) == 2
    finally:
        await session.close()


async def test_the_charts_caption_names_its_buckets_as_spans(http, system, account, db):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "Later", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
                               "message_template": "Hi", "scheduled_at": "2031-01-01T09:00:00Z"})  # fmt: skip
    assert status == 201, body
    url = f"{system.api_url}/campaigns/{body['id']}"
    assert (await call(http, "POST", url + "/launch", account.headers))[0] == 200
    session = await signed_in(system, account.key)
    try:
        # Launched 30 seconds, 100 seconds, 50 minutes and 100 minutes ago: a bucket of 1 s, 2 s, 1 min and 2 min
        for ago, caption in [
            (30, "Over the last minute, per second: 0 sent, 0 delivered, 0 replied; at most 0 in one second."),
            (100, "Over the last 2 minutes, per 2 seconds: 0 sent, 0 delivered, 0 replied; at most 0 in 2 seconds."),
            (3000, "Over the last hour, per minute: 0 sent, 0 delivered, 0 replied; at most 0 in one minute."),
            (6000, "Over the last 2 hours, per 2 minutes: 0 sent, 0 delivered, 0 replied; at most 0 in 2 minutes."),
        ]:
            launched = "UPDATE campaigns SET launched_at = now() - make_interval(secs => $2) WHERE id = $1"
            await db.execute(launched, body["id"], ago)
            async with session.get(f"{system.api_url}/dashboard/campaigns/{body['id']}") as response:
                page = await response.text()
            assert f'<p id="chart-summary" class="summary">{caption}</p>' in page, ago
    finally:
        await session.close()


async def test_refused_forms_give_their_reasons_in_plain_words(http, system, account):
    _status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "Leads"})
    session = await signed_in(system, account.key)
    try:
        # A group renamed to spaces: the name must not be empty (not pydantic's "String should have…")
        url = f"{system.api_url}/dashboard/groups/{group['id']}"
        status, page = await _refused(session, url, intent="rename", name="   ")
        assert status == 422, page
        errors, _name = _field(page, "name")
        assert "must not be empty" in errors, errors
        assert "String should" not in page
        # A campaign whose window starts at 25: at most 23
        new = system.api_url + "/dashboard/campaigns/new"
        fields = [(k, v) for k, v in await _form_fields(session, new) if k not in ("name", "start_hour")]
        status, page, _location = await _submit(session, new, [*fields, ("name", "Late"), ("start_hour", "25")])
        assert status == 422, page
        errors, _hour = _field(page, "start_hour")
        assert "must be at most 23" in errors, errors
        assert "Input should" not in page
        # An import with no file chosen (a browser sends the part, empty): the reason is next to the file
        url = system.api_url + "/dashboard/contacts/import"
        form = aiohttp.FormData()
        form.add_field("csrf_token", await _token(session, url))
        form.add_field("file", b"", filename="", content_type="application/octet-stream")
        async with session.post(url, data=form) as response:
            status, page = response.status, await response.text()
        assert status == 422, page
        block = page[page.index('<label for="f-file">') : page.index('id="f-file"')]
        assert "required: the file is empty" in block, block
        assert ">missing<" not in page
    finally:
        await session.close()


async def test_the_account_page_gives_amounts_as_the_api_does_and_labels_a_keys_revoked_date(http, system, db):
    account = await make_account(db)
    page_url = system.api_url + "/dashboard/account"
    session = await signed_in(system, account.key)
    try:
        # Given a key issued, then revoked
        response = await _post(session, page_url, page_url + "/keys", intent="create")
        issued = re.search(r'id="new-key" type="text" readonly value="(sk_[^"]+)"', await response.text())
        assert issued, "the new key is not on the page"
        response = await _post(session, page_url, page_url + "/keys", intent="revoke", prefix=issued[1][:8])
        assert response.status == 303
        _status, api = await call(http, "GET", system.api_url + "/account", account.headers)
        async with session.get(system.api_url + "/dashboard/account") as response:
            page = await response.text()
    finally:
        await session.close()
    # Then every amount has four decimals, as the API gives them (not 0.001 beside 99.6998)
    figures = page[page.index('<dl class="figures">') : page.index("</dl>")]
    shown = re.findall(r"<dd[^>]*>([^<]*)</dd>", figures)
    assert len(shown) == 5, figures
    assert all(re.fullmatch(r"[\d,]+\.\d{4}", amount) for amount in shown), shown
    assert f'<dd data-figure="balance">{api["balance"]}</dd>' in figures
    # and the revoked key's date is in a cell of its own, labelled (a card at 390 px reads the label)
    table = page[page.index('<table class="cards">') : page.index("</table>")]
    headers = re.findall(r"<th scope=\"col\">([^<]*)</th>", table)
    assert "Revoked" in headers, headers
    assert re.search(r'<td data-label="Revoked"><time datetime="[^"]+" data-local>', table), table
    assert all(label.strip() for label in re.findall(r'data-label="([^"]*)"', table))
