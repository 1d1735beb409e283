"""Charging an SMS answer at the real PostgreSQL: by the account's SMS price and the segments, in
one statement, never below zero for an agent's reply (however many come at once), always for a
compliance answer."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from shared.db import balance
from shared.db.pool import create_pool
from tests.conftest import Infra, make_account


async def test_a_reply_is_charged_by_segment_until_the_balance_cannot_cover_it(db):
    # Given an account with 0.0250 at 0.0100 a segment
    account = await make_account(db, balance="0.0250")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    # When replies of two segments, then one, then one more are charged
    assert await balance.charge_reply(db, account.id, "sms", 2, always=False) == Decimal("0.0200")
    assert await balance.charge_reply(db, account.id, "sms", 1, always=False) is None  # 0.0050 left: refused
    # Then the refused one changed nothing, and says why
    shortfall = await balance.reply_shortfall(db, account.id, "sms", 1)
    assert (shortfall["balance"], shortfall["cost"]) == (Decimal("0.0050"), Decimal("0.0100"))
    # And a compliance answer is charged all the same, below zero
    assert await balance.charge_reply(db, account.id, "sms", 1, always=True) == Decimal("0.0100")
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("-0.0050")
    assert await balance.charge_reply(db, account.id, "sms", 1, always=False) is None


async def test_replies_charged_at_once_never_take_the_balance_below_zero(db, infra: Infra):
    # Given an account whose balance covers exactly five one-segment replies
    account = await make_account(db, balance="0.0500")
    await db.execute("UPDATE accounts SET price_sms = 0.0100 WHERE id = $1", account.id)
    # When twenty are charged at once, each on its own connection
    async with create_pool(infra.database_url, 1, 10) as pool:
        costs = await asyncio.gather(
            *(balance.charge_reply(pool, account.id, "sms", 1, always=False) for _ in range(20))
        )
    # Then five were charged, the rest refused, and the balance is exactly zero
    assert sorted(costs, key=str) == [Decimal("0.0100")] * 5 + [None] * 15
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0.0000")


async def test_an_email_answer_is_charged_as_one_email_and_given_back_when_not_sent(db):
    # Given an account with 0.0030 at 0.0020 an email (and an SMS price it must not use)
    account = await make_account(db, balance="0.0030")
    await db.execute("UPDATE accounts SET price_email = 0.0020, price_sms = 0.0100 WHERE id = $1", account.id)
    # When an email answer is charged, then another
    cost = await balance.charge_reply(db, account.id, "email", 1, always=False)
    assert cost == Decimal("0.0020")
    assert await balance.charge_reply(db, account.id, "email", 1, always=False) is None  # 0.0010 left
    shortfall = await balance.reply_shortfall(db, account.id, "email", 1)
    assert (shortfall["balance"], shortfall["cost"]) == (Decimal("0.0010"), Decimal("0.0020"))
    # And the first could not be sent after all: its charge comes back
    await balance.refund_reply(db, account.id, cost)
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0.0030")
