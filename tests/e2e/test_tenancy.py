"""Tenancy by the number (issue 10): an inbound SMS belongs to the account that owns the number it
was sent to; replies, opt-outs and agents act within that account only. The platform's default
number is shared: a reply to it answers the latest delivery sent from it to that contact. A
message to a number nobody owns is answered with nothing; one from a deleted contact is kept and
answered cleanly."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone, results_when, wait_until

pytestmark = pytest.mark.e2e

DEFAULT = "+15005550006"


async def _own_number(http, system, account, fake_twilio) -> str:
    number = new_phone()
    fake_twilio.owned_numbers.add(number)
    status, sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": number})
    assert status == 201, sender
    return number


async def _launched(http, system, account, phone: str, from_number: str | None, agent: dict) -> str:
    """An SMS campaign of `account` to `phone` (from `from_number`, else the default), created and
    launched with a new agent made of `agent`: its id."""
    status, made = await call(http, "POST", system.api_url + "/agents", account.headers, agent)
    assert status == 201, made
    body = {"name": "c", "type": "sms", "agent_id": made["id"], "contacts": [phone], "message_template": "hi",
            "status": "scheduled", **({"from_number": from_number} if from_number else {})}
    status, campaign = await call(http, "POST", system.api_url + "/campaigns", account.headers, body)
    assert status == 201, campaign
    return str(campaign["id"])


async def _delivered(http, system, account, phone: str, from_number: str | None, answer: str) -> str:
    """A delivered SMS campaign of `account` to `phone`, whose rules agent answers `answer`."""
    agent = {"name": "Agent", "mode": "rules", "settings": {"default_reply": answer}}
    campaign_id = await _launched(http, system, account, phone, from_number, agent)
    await results_when(http, system.api_url, account.headers, campaign_id, lambda r: r["delivered"] == 1)
    return campaign_id


async def _replied(http, system, account, campaign_id: str) -> int:
    _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    return int(r["replied"])


async def _opted_out(db, account, phone: str) -> bool:
    return bool(await db.fetchval(
        "SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone))


async def test_each_accounts_number_acts_within_that_account_only(http, system, db, fake_twilio, texting):
    # Given two accounts, each with a number of its own, each having texted the same person
    a, b = await make_account(db), await make_account(db)
    number_a = await _own_number(http, system, a, fake_twilio)
    number_b = await _own_number(http, system, b, fake_twilio)
    person = new_phone()
    campaign_a = await _delivered(http, system, a, person, number_a, "A here")
    campaign_b = await _delivered(http, system, b, person, number_b, "B here")  # B's is the latest

    # When the person answers each number, each account's agent answers its own contact
    assert await texting(person, "hello A", to=number_a) == "A here"
    assert await texting(person, "hello B", to=number_b) == "B here"
    assert (await _replied(http, system, a, campaign_a), await _replied(http, system, b, campaign_b)) == (1, 1)

    # And a STOP to A's number opts out A's contact only
    assert "unsubscribed" in (await texting(person, "STOP", to=number_a))
    assert await _opted_out(db, a, person)
    assert not await _opted_out(db, b, person)
    conversation = await db.fetch(
        "SELECT account_id, direction, body FROM messages WHERE contact_id IN "
        "(SELECT id FROM contacts WHERE phone = $1) ORDER BY created_at, id", person)
    assert {(m["account_id"], m["body"]) for m in conversation if m["direction"] == "in"} == {
        (a.id, "hello A"), (b.id, "hello B"), (a.id, "STOP")}


async def test_a_stop_to_an_accounts_number_is_honoured_without_a_delivery(http, system, db, fake_twilio, texting):
    a = await make_account(db)
    number = await _own_number(http, system, a, fake_twilio)
    person = new_phone()
    status, _contact = await call(http, "POST", system.api_url + "/contacts", a.headers, {"phone": person})
    assert status == 201
    assert "unsubscribed" in (await texting(person, "stop", to=number))
    assert await _opted_out(db, a, person)


async def test_a_message_to_a_number_nobody_owns_is_answered_with_nothing(http, system, account, db, texting):
    person = new_phone()
    campaign = await _delivered(http, system, account, person, None, "should not answer")
    nobodys = new_phone()
    assert await texting(person, "hello?", to=nobodys) is None
    assert await texting(person, "STOP", to=nobodys) is None
    assert await _replied(http, system, account, campaign) == 0
    assert not await _opted_out(db, account, person)
    await wait_until(lambda: _logged(system, "reply.unowned_number", nobodys), timeout=10)


async def _logged(system, event: str, text: str) -> bool:
    return any(event in line and text in line for line in system.services["tracker"].output().splitlines())


async def test_the_default_number_is_shared_latest_delivery_from_it_wins(http, system, db, fake_twilio, texting):
    a, b = await make_account(db), await make_account(db)
    person = new_phone()
    first = await _delivered(http, system, a, person, None, "A on the default")
    second = await _delivered(http, system, b, person, None, "B on the default")  # the latest from the default
    own = await _own_number(http, system, a, fake_twilio)
    await _delivered(http, system, a, person, own, "A on its own number")  # later, but from another number
    assert await texting(person, "hello", to=DEFAULT) == "B on the default"
    assert (await _replied(http, system, a, first), await _replied(http, system, b, second)) == (0, 1)


async def test_a_reply_from_a_deleted_contact_is_kept_and_answered_cleanly(http, system, account, db, fake_twilio):
    person = new_phone()
    campaign = await _delivered(http, system, account, person, None, "answer")
    contact_id = await db.fetchval("SELECT id FROM contacts WHERE account_id = $1 AND phone = $2", account.id, person)
    status, _ = await call(http, "DELETE", f"{system.api_url}/contacts/{contact_id}", account.headers)
    assert status == 204
    url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    sid = "SM" + uuid.uuid4().hex
    params = {"MessageSid": sid, "AccountSid": fake_twilio.account_sid, "From": person, "To": DEFAULT,
              "Body": "are you still there?"}
    async with http.post(url, data=params, headers=fake_twilio.signed(url, params)) as response:
        assert response.status == 200
        assert "<Message>" not in await response.text()
    assert await db.fetchval("SELECT count(*) FROM webhook_events WHERE dedupe_key = $1", f"twilio:inbound:{sid}") == 1
    assert await _replied(http, system, account, campaign) == 0


async def test_an_email_written_to_another_accounts_address_is_not_this_accounts(http, system, account, db,
                                                                                  sandbox_smtp):
    from email.message import EmailMessage

    from tests.e2e.test_email import finished, launch, new_email, one_mail
    from tests.e2e.test_email_inbound import _post
    from tests.support import verified_email_sender

    # Given an email campaign of this account, and an address that is another account's sender
    other = await make_account(db)
    theirs = new_email("theirs")
    await verified_email_sender(http, system.api_url, other.headers, sandbox_smtp, theirs)
    person = new_email("person")
    campaign_id = await launch(http, system, account, contacts=[person])
    await finished(http, system, account, campaign_id)
    about = one_mail(sandbox_smtp, person).header("Message-ID")

    def reply(to: str, text: str) -> bytes:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = person, to, "Re: Hello"
        mail["Message-ID"], mail["In-Reply-To"] = f"<{uuid.uuid4().hex}@example.com>", about
        mail.set_content(text)
        return bytes(mail)

    # When the person writes to the other account's address naming this account's message, it is refused
    status, answer = await _post(http, system, reply(theirs, "hello"))
    assert (status, answer["result"]) == (200, "other_account")
    _s, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert results["replied"] == 0
    # Then written to this account's own (the platform default here), it is this account's reply
    status, answer = await _post(http, system, reply(system.env.get("CAMPAIGNS_DEFAULT_FROM_EMAIL",
                                                                    "campaigns@localhost"), "hello"))
    assert (status, answer["result"]) == (200, "replied")


async def _skipped(http, system, db, account, phone: str, from_number: str | None) -> None:
    """A later SMS campaign of `account` to `phone` completes with its delivery skipped as opted out."""
    campaign_id = await _launched(http, system, account, phone, from_number, {"name": "Agent"})
    results = await results_when(
        http, system.api_url, account.headers, campaign_id, lambda r: r["status"] == "completed"
    )
    assert (results["skipped"], results["sent"], results["delivered"]) == (1, 0, 0), results
    row = await db.fetchrow("SELECT state, error FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert (row["state"], row["error"]) == ("skipped", "contact opted out of sms")


async def test_a_stop_to_the_shared_number_opts_out_every_account_that_sent_from_it(
    http, system, db, fake_twilio, texting
):
    # Given A then B texting the same person from the shared default number (B's is the latest),
    # and C texting them from a number of its own
    a, b, c = await make_account(db), await make_account(db), await make_account(db)
    person = new_phone()
    await _delivered(http, system, a, person, None, "A on the default")
    await _delivered(http, system, b, person, DEFAULT, "B on the default")
    await _delivered(http, system, c, person, await _own_number(http, system, c, fake_twilio), "C on its own")

    # When the person texts STOP to the shared number, they unsubscribed from that number: A's
    # contact and B's are opted out, C's (which never sent from it) is not
    assert "unsubscribed" in (await texting(person, "STOP", to=DEFAULT))
    assert (await _opted_out(db, a, person), await _opted_out(db, b, person), await _opted_out(db, c, person)) == (
        True, True, False)

    # And A's next campaign from the shared number skips them: nothing is sent to the provider
    sent = len(fake_twilio.sent_to(person))
    await _skipped(http, system, db, a, person, None)
    assert len(fake_twilio.sent_to(person)) == sent

    # And START to the shared number opts both back in
    assert "resubscribed" in (await texting(person, "START", to=DEFAULT))
    assert (await _opted_out(db, a, person), await _opted_out(db, b, person)) == (False, False)


async def test_a_stop_from_a_phone_that_is_no_contact_yet_is_remembered(http, system, db, fake_twilio, texting):
    # Given an account with a number of its own, and a person it never texted nor has as a contact
    a, other = await make_account(db), await make_account(db)
    number = await _own_number(http, system, a, fake_twilio)
    person = new_phone()

    # When the person texts STOP to A's number, A remembers it: an opted-out contact, for A only
    assert "unsubscribed" in (await texting(person, "STOP", to=number))
    assert await _opted_out(db, a, person)
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE phone = $1", person) == 1

    # And A's later campaign to that phone (which upserts the contact) skips it: nothing is sent
    await _skipped(http, system, db, a, person, number)
    assert await _opted_out(db, a, person)
    assert fake_twilio.sent_to(person) == []

    # While another account's campaign to the phone still reaches it
    await _delivered(http, system, other, person, None, "other")
    assert len(fake_twilio.sent_to(person)) == 1


async def test_a_stop_to_the_shared_number_from_a_phone_nobody_texted_is_acknowledged(
    http, system, db, texting, fake_twilio
):
    person = new_phone()
    assert "unsubscribed" in (await texting(person, "STOP", to=DEFAULT))
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE phone = $1", person) == 0

    # And Twilio refuses the shared number's messages to that phone from then on, whichever account
    # sends them (21610): the delivery fails uncharged and the contact is opted out in that account
    later = await make_account(db)
    agent = {"name": "Agent", "mode": "rules", "settings": {"default_reply": "hi"}}
    campaign_id = await _launched(http, system, later, person, None, agent)
    results = await results_when(http, system.api_url, later.headers, campaign_id, lambda r: r["failed"] == 1)
    assert (results["sent"], results["delivered"]) == (0, 0), results
    row = await db.fetchrow("SELECT error, cost FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert "21610" in row["error"], row
    assert row["cost"] is None
    assert await _opted_out(db, later, person)
    assert [m for m in fake_twilio.messages.values() if m["to"] == person] == []  # none accepted

    # Until the person texts START to it: then the number reaches them again
    assert "resubscribed" in (await texting(person, "START", to=DEFAULT))
    other = await make_account(db)
    await _delivered(http, system, other, person, None, "hi")
