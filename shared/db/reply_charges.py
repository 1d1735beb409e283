"""What an SMS the tracker sends back costs: an agent's reply, or the answer to STOP/HELP/START, is
charged to the account at its SMS price by segment, straight from the balance (a campaign's
reservation is for its own sends). An agent's reply never takes the balance below zero; a
compliance answer is charged whatever the balance (carriers and the law expect it sent)."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from shared.db.connection import Executor

# One statement: the check and the charge cannot be split by a concurrent charge.
_CHARGE = """
UPDATE accounts SET balance = balance - price_sms * $2
WHERE id = $1 AND (balance >= price_sms * $2 OR $3)
RETURNING price_sms * $2 AS cost
"""
_SHORTFALL = "SELECT balance, price_sms * $2 AS cost FROM accounts WHERE id = $1"


async def charge_sms(conn: Executor, account_id: str, segments: int, always: bool) -> Decimal | None:
    """Charge the account for one SMS of `segments` segments: what it cost, or None when the
    balance cannot cover it (nothing charged). `always` charges it anyway, below zero if need be."""
    cost: Decimal | None = await conn.fetchval(_CHARGE, account_id, segments, always)
    return cost


async def shortfall(conn: Executor, account_id: str, segments: int) -> asyncpg.Record | None:
    """The account's balance and what an SMS of `segments` segments would cost (why a charge was
    refused); None for no such account."""
    return await conn.fetchrow(_SHORTFALL, account_id, segments)
