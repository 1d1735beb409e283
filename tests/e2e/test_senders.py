"""Real sender verification (issue 10): a phone is a sender when the platform's Twilio account
owns it or has it as a verified caller ID (asked through the real twilio client, answered by the
fake Twilio); an email when its owner opens the signed link mailed to it. One address is one
account's at most; a campaign names only a verified sender (or the platform's default)."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone, verification_link, verified_email_sender, wait_until

pytestmark = pytest.mark.e2e


def _email() -> str:
    return f"sender.{uuid.uuid4().hex[:10]}@example.com"


async def _senders(http, system, account) -> dict[str, str]:
    _status, page = await call(http, "GET", system.api_url + "/senders", account.headers)
    return {s["address"]: s["state"] for s in page["data"]}


async def test_a_phone_is_a_sender_when_twilio_holds_it(http, system, account, db, fake_twilio):
    bought, caller_id, nobodys = new_phone(), new_phone(), new_phone()
    fake_twilio.owned_numbers.add(bought)
    fake_twilio.caller_ids.add(caller_id)
    for number in (bought, caller_id):
        status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": number})
        assert (status, sender["state"], sender["verified"]) == (201, "verified", True), sender
    asked = [r.path for r in fake_twilio.requests if r.get("PhoneNumber") == caller_id]
    assert any(p.endswith("/IncomingPhoneNumbers.json") for p in asked)
    assert any(p.endswith("/OutgoingCallerIds.json") for p in asked)  # asked after the first said no
    status, error = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": nobodys})
    assert status == 422, error
    assert error["error"]["details"][0]["field"] == "phone"
    assert "neither bought" in error["error"]["details"][0]["reason"]
    assert await _senders(http, system, account) == {bought: "verified", caller_id: "verified"}
    # another account may not have it too
    other = await make_account(db)
    status, error = await call(http, "POST", system.api_url + "/senders", other.headers, {"phone": bought})
    assert status == 409, error
    assert "another account's sender" in error["error"]["message"]
    # the platform's default is everyone's, and no one's to register
    status, error = await call(http, "POST", system.api_url + "/senders", account.headers,
                               {"phone": system.env["CAMPAIGNS_DEFAULT_FROM_NUMBER"]})
    assert (status, error["error"]["details"][0]["field"]) == (422, "phone")


async def test_an_email_sender_is_verified_by_the_link_mailed_to_it(http, system, account, db, sandbox_smtp):
    address = _email()
    status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"email": address})
    assert (status, sender["state"], sender["verified"]) == (201, "pending", False), sender
    mail = sandbox_smtp.sent_to(address)[-1]
    link = verification_link(mail.part("plain") or "")
    assert link.startswith(system.env["CAMPAIGNS_PUBLIC_URL"] + "/senders/verify/")
    assert mail.header("List-Unsubscribe") is None  # not a campaign's message
    # pending: a campaign may not send from it yet (create), nor once drafted (launch)
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    campaign = {"name": "mail", "type": "email", "agent_id": agent["id"], "contacts": ["a@example.com"],
                "subject": "Hi", "message_template": "Hello", "from_number": address}
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers, campaign)
    assert status == 422, error
    assert error["error"]["details"][0]["field"] == "from_number"
    assert address in error["error"]["details"][0]["reason"]
    # a scanner following the link changes nothing; the owner's click does
    async with http.get(link) as page:
        assert page.status == 200
        assert "Confirm" in await page.text()
    assert await _senders(http, system, account) == {address: "pending"}
    async with http.post(link) as confirmed:
        assert confirmed.status == 200, await confirmed.text()
    assert await _senders(http, system, account) == {address: "verified"}
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers, campaign)
    assert status == 201, body
    # a link altered, or of another kind, verifies nothing
    async with http.post(link[:-2] + ("AA" if not link.endswith("AA") else "BB")) as forged:
        assert forged.status == 404
    # another account cannot take it now: 409 at once, and its own link would be refused too
    other = await make_account(db)
    status, error = await call(http, "POST", system.api_url + "/senders", other.headers, {"email": address})
    assert status == 409, error


async def test_one_address_two_claims_first_link_opened_wins(http, system, db, sandbox_smtp):
    address = _email()
    first, second = await make_account(db), await make_account(db)
    for account in (first, second):
        status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"email": address})
        assert (status, sender["state"]) == (201, "pending")
    links = [verification_link(m.part("plain") or "") for m in sandbox_smtp.sent_to(address)]
    assert len(links) == 2
    async with http.post(links[1]) as won:
        assert won.status == 200
    async with http.post(links[0]) as lost:
        assert lost.status == 409
        assert "another account" in await lost.text()
    assert await _senders(http, system, second) == {address: "verified"}
    assert await _senders(http, system, first) == {address: "pending"}


async def test_a_draft_whose_sender_is_not_verified_cannot_launch(http, system, account, db, fake_twilio):
    own = new_phone()
    fake_twilio.owned_numbers.add(own)
    status, _sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert status == 201
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "d", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
                                "message_template": "hi", "from_number": own})
    assert status == 201, draft
    # the sender's verification is withdrawn (as migration 0011 does to a second claim)
    await db.execute("UPDATE sender_identities SET verified_at = NULL WHERE account_id = $1 AND address = $2",
                     account.id, own)
    status, error = await call(http, "POST", f"{system.api_url}/campaigns/{draft['id']}/launch", account.headers)
    assert status == 422, error
    assert (error["error"]["details"][0]["field"], own in error["error"]["details"][0]["reason"]) == (
        "from_number", True)
    status, error = await call(http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
                               {"name": "renamed"})
    assert (status, error["error"]["details"][0]["field"]) == (422, "from_number")
    # the platform's default stays available to everyone
    status, patched = await call(http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
                                 {"from_number": system.env["CAMPAIGNS_DEFAULT_FROM_NUMBER"]})
    assert status == 200, patched
    status, launched = await call(http, "POST", f"{system.api_url}/campaigns/{draft['id']}/launch", account.headers)
    assert status == 200, launched


async def test_an_email_campaign_sends_from_its_verified_address(http, system, account, sandbox_smtp):
    address, to = _email(), _email()
    await verified_email_sender(http, system.api_url, account.headers, sandbox_smtp, address)
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "mail", "type": "email", "agent_id": agent["id"], "contacts": [to],
                               "subject": "Hi", "message_template": "Hello", "from_number": address,
                               "status": "scheduled"})
    assert status == 201, body
    await wait_until(lambda: _arrived(sandbox_smtp, to), timeout=60)
    assert sandbox_smtp.sent_to(to)[0].header("From") == address
    status, _ = await call(http, "DELETE", f"{system.api_url}/senders/{quote(address)}", account.headers)
    assert status in (204, 409)


async def _arrived(smtp, address: str) -> bool:
    return bool(smtp.sent_to(address))


async def test_errors_name_the_field_the_request_sent(http, system, account, db):
    # a sender's field says what it must be: an email is never read as a phone number
    cases = [
        ({"email": "nope"}, "email", "'nope' is not an email address"),
        ({"email": "+14155550100"}, "email", "'+14155550100' is not an email address"),
        ({"phone": "someone@example.com"}, "phone", "is not a valid E.164 phone number"),
        ({"address": "nope"}, "address", "is not a valid E.164 phone number"),
        ({"address": "a@b"}, "address", "'a@b' is not an email address"),
    ]
    for payload, field, reason in cases:
        status, error = await call(http, "POST", system.api_url + "/senders", account.headers, payload)
        assert status == 422, (payload, error)
        [detail] = error["error"]["details"]
        assert (detail["field"], reason in detail["reason"]) == (field, True), (payload, error)
    nobodys = new_phone()  # a number the platform's Twilio account does not hold
    status, error = await call(http, "POST", system.api_url + "/senders", account.headers, {"address": nobodys})
    assert (status, error["error"]["details"][0]["field"]) == (422, "address"), error
    assert await _senders(http, system, account) == {}
    # a campaign's sender given as `caller_id` is reported as `caller_id`, at create and at change
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    campaign = {"name": "d", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
                "message_template": "hi"}
    for sent in ({"caller_id": nobodys}, {"config": {"caller_id": nobodys}}):
        status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers, {**campaign, **sent})
        assert status == 422, error
        [detail] = error["error"]["details"]
        assert (detail["field"], nobodys in detail["reason"]) == ("caller_id", True), error
    status, error = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {**campaign, "caller_id": "12"})
    assert (status, [d["field"] for d in error["error"]["details"]]) == (422, ["caller_id"]), error
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == 0
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, campaign)
    assert status == 201, draft
    status, error = await call(http, "PATCH", f"{system.api_url}/campaigns/{draft['id']}", account.headers,
                               {"caller_id": nobodys})
    assert (status, error["error"]["details"][0]["field"]) == (422, "caller_id"), error
    assert await db.fetchval("SELECT from_number FROM campaigns WHERE id = $1", draft["id"]) is None


async def _pages(http, url: str, headers: dict[str, str], limit: int) -> list[list[dict]]:
    """Every page of a list, `limit` at a time, following `next_cursor`."""
    pages, cursor = [], None
    while True:
        status, page = await call(http, "GET", f"{url}?limit={limit}" + (f"&cursor={cursor}" if cursor else ""),
                                  headers)
        assert status == 200, page
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_senders_are_paged_with_a_cursor_oldest_first(http, system, account, fake_twilio):
    numbers = [new_phone() for _ in range(3)]
    fake_twilio.owned_numbers.update(numbers)
    for number in numbers:
        status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": number})
        assert status == 201, sender
    url = system.api_url + "/senders"
    pages = await _pages(http, url, account.headers, limit=2)
    assert [[s["address"] for s in page] for page in pages] == [numbers[:2], numbers[2:]]
    assert {(s["kind"], s["state"], s["verified"]) for page in pages for s in page} == {("phone", "verified", True)}
    # the cursor names the last sender seen, not a position: one removed meanwhile skips no other
    status, first = await call(http, "GET", url + "?limit=1", account.headers)
    assert [s["address"] for s in first["data"]] == numbers[:1]
    status, _ = await call(http, "DELETE", f"{url}/{quote(numbers[0])}", account.headers)
    assert status == 204
    status, rest = await call(http, "GET", f"{url}?limit=2&cursor={first['next_cursor']}", account.headers)
    assert ([s["address"] for s in rest["data"]], rest["next_cursor"]) == (numbers[1:], None)
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=two", "limit"),
                         ("cursor=zzz", "cursor"), (f"cursor={rest['data'][0]['address']}", "cursor")):
        status, error = await call(http, "GET", f"{url}?{query}", account.headers)
        assert (status, error["error"]["details"][0]["field"]) == (422, field), (query, error)
