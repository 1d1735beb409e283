"""SMS answers cost money: an agent's reply is cut to what an SMS holds and charged at the account's
SMS price by segment, and is not sent when the balance cannot cover it; the answers to STOP, HELP
and START are always sent, and charged even below zero."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiohttp import web

from tests.conftest import make_account
from tests.support import call, new_phone, results_when, signed_in, wait_until

pytestmark = pytest.mark.e2e


async def _priced_account(db, balance: str = "1.00"):
    account = await make_account(db, balance=balance)
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    return account


async def _sent_to(http, system, account, phone: str, agent: dict) -> str:
    """A campaign sent to `phone` and ended, its unused reservation back in the balance."""
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "answers", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                               "message_template": "Reply with any question", "status": "scheduled"})
    assert status == 201, body
    await results_when(http, system.api_url, account.headers, body["id"], lambda r: r["status"] == "completed")

    async def refunded():
        _status, c = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}", account.headers)
        return c["reserved"] == "0.0000"

    await wait_until(refunded)
    return body["id"]


async def _balance(db, account) -> Decimal:
    return await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id)


async def test_a_long_agent_reply_is_cut_to_one_sms_and_charged_by_its_segments(
    http, system, db, texting, fake_twilio
):
    # Given a rules agent whose answer is 2,000 characters, and an account at 0.0100 a segment
    account = await _priced_account(db)
    phone = new_phone()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Riley", "mode": "rules", "settings": {"default_reply": "y" * 2000}})
    campaign_id = await _sent_to(http, system, account, phone, agent)
    before = await _balance(db, account)
    # When the contact texts back
    answer = await texting(phone, "tell me everything")
    # Then the answer is cut to 1,600 characters ending with "...", and Twilio sends it
    assert answer == "y" * 1597 + "..."
    assert fake_twilio.replies[-1] == {"to": phone, "body": answer}
    # And it is charged for its 11 segments (still GSM-7: 153 a segment), recorded on its message
    row = await db.fetchrow("SELECT body, cost, error FROM messages WHERE campaign_id = $1 AND author = 'agent'",
                            campaign_id)
    assert (row["body"], row["cost"], row["error"]) == (answer, Decimal("0.1100"), None)
    assert before - await _balance(db, account) == Decimal("0.1100")
    # And a compliance answer is charged as any SMS (one segment)
    assert "STOP" in await texting(phone, "HELP")
    assert before - await _balance(db, account) == Decimal("0.1200")
    assert await db.fetchval("SELECT cost FROM messages WHERE campaign_id = $1 AND author = 'system'",
                             campaign_id) == Decimal("0.0100")


@pytest.fixture
async def webhook_agent():
    """An agent's webhook on this machine: it answers "Sure." and keeps each conversation it is sent."""
    seen: list[dict] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"reply": "Sure."})

    app = web.Application()
    app.router.add_post("/agent", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/agent", seen
    await runner.cleanup()


async def test_a_reply_the_balance_cannot_cover_is_not_sent_but_compliance_answers_always_are(
    http, system, db, texting, fake_twilio, webhook_agent
):
    url, seen = webhook_agent
    account = await _priced_account(db)
    phone = new_phone()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                                {"name": "Hook", "mode": "webhook", "settings": {"url": url}})
    campaign_id = await _sent_to(http, system, account, phone, agent)
    # Given a balance that cannot cover one segment
    await db.execute("UPDATE accounts SET balance = 0.0050 WHERE id = $1", account.id)
    # When the contact texts back, the agent's answer is not sent, and nothing is charged
    assert await texting(phone, "hello?") is None
    assert all(r["to"] != phone for r in fake_twilio.replies)
    reason = "not sent: the balance (0.0050) cannot cover the reply (0.0100)"
    row = await db.fetchrow("SELECT body, cost, error FROM messages WHERE campaign_id = $1 AND author = 'agent'",
                            campaign_id)
    assert (row["body"], row["cost"], row["error"]) == ("Sure.", None, reason)
    assert await _balance(db, account) == Decimal("0.0050")
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert results["replied"] == 1  # the reply is still counted
    # And the conversation page says why
    session = await signed_in(system, account.key)
    try:
        async with session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}/conversations/"
                               f"{await _contact_id(db, campaign_id)}") as response:
            assert response.status == 200
            assert reason in await response.text()
    finally:
        await session.close()
    # When the contact texts HELP, the answer is sent all the same, and charged below zero
    assert "STOP" in await texting(phone, "HELP")
    assert await _balance(db, account) == Decimal("-0.0050")
    # When the account is credited, the agent answers again; it never saw the answer not sent
    await db.execute("UPDATE accounts SET balance = 1.0000 WHERE id = $1", account.id)
    assert await texting(phone, "and now?") == "Sure."
    assert await _balance(db, account) == Decimal("0.9900")
    assert [m["author"] for m in seen[-1]["messages"]] == ["campaign", "contact", "contact", "system", "contact"]
    # When the balance is gone and the contact texts STOP, it is answered and charged
    await db.execute("UPDATE accounts SET balance = 0 WHERE id = $1", account.id)
    assert "unsubscribed" in await texting(phone, "STOP")
    assert await _balance(db, account) == Decimal("-0.0100")
    assert await db.fetchval("SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2",
                             account.id, phone)


async def test_stop_to_an_accounts_own_number_without_a_delivery_is_charged_to_it(http, system, db, fake_twilio):
    # Given an account's own number, and a phone it never sent to
    account = await _priced_account(db, balance="0")
    own, phone = new_phone(), new_phone()
    fake_twilio.owned_numbers.add(own)
    status, _sender = await call(http, "POST", system.api_url + "/senders", account.headers, {"phone": own})
    assert status == 201
    fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    # When the phone texts STOP to it
    future = asyncio.run_coroutine_threadsafe(fake_twilio.inbound(phone, own, "STOP"), fake_twilio.thread.loop)
    # Then it is answered, and the account pays for the answer, below zero
    assert "unsubscribed" in await asyncio.wrap_future(future)
    assert await _balance(db, account) == Decimal("-0.0100")


async def _contact_id(db, campaign_id: str) -> str:
    return await db.fetchval("SELECT contact_id FROM deliveries WHERE campaign_id = $1", campaign_id)

