"""Balance: a launch reserves a run's estimate; each send's cost is held from the reservation (the
balance once it is used up) as it is claimed, and given back if it is not sent; what a finished run
did not use goes back to the balance. A campaign whose next send the money cannot cover pauses. An
SMS answer the tracker sends back is charged straight from the balance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from shared.db.connection import Connection, Executor

_RESERVE = """
WITH a AS (
    UPDATE accounts SET balance = balance - $3 WHERE id = $1 AND balance >= $3 RETURNING id
)
UPDATE campaigns c SET reserved = c.reserved + $3 FROM a WHERE c.id = $2 AND c.account_id = a.id
RETURNING c.id
"""
# An SMS the tracker sends back (an agent's reply, the answer to STOP/HELP/START) is charged straight
# from the balance (a campaign's reservation is for its own sends), in one statement: the check and
# the charge cannot be split by a concurrent charge.
#: An answer's price: an email's, else an SMS segment's, times `$2` (segments, or 1 email).
_REPLY_PRICE = "(CASE WHEN $3::text = 'email' THEN price_email ELSE price_sms END * $2)"
_CHARGE_REPLY = f"""
UPDATE accounts SET balance = balance - {_REPLY_PRICE}
WHERE id = $1 AND (balance >= {_REPLY_PRICE} OR $4)
RETURNING {_REPLY_PRICE} AS cost
"""  # noqa: S608 (a constant)
_REPLY_SHORTFALL = f"SELECT balance, {_REPLY_PRICE} AS cost FROM accounts WHERE id = $1"  # noqa: S608 (a constant)
_REFUND_REPLY = "UPDATE accounts SET balance = balance + $2 WHERE id = $1"
#: Paused for want of money, unless a person changed its state meanwhile (resume goes on as it was).
_PAUSE_SHORT = """
UPDATE campaigns SET status = 'paused', resume_to = status, paused_reason = $2, updated_at = now()
WHERE id = $1 AND status IN ('scheduled', 'running')
RETURNING id, account_id
"""
_REFUND = """
WITH c AS (
    SELECT id, account_id, reserved FROM campaigns WHERE id = ANY($1::text[]) AND reserved > 0 FOR NO KEY UPDATE
), zero AS (
    UPDATE campaigns SET reserved = 0 FROM c WHERE campaigns.id = c.id RETURNING c.account_id, c.reserved
)
UPDATE accounts a SET balance = a.balance + s.total
FROM (SELECT account_id, sum(reserved) AS total FROM zero GROUP BY account_id) AS s
WHERE a.id = s.account_id
"""


async def reserve(conn: Connection, account_id: str, campaign_id: str, amount: Decimal) -> bool:
    """Move `amount` from the balance to the campaign's reservation; False if the balance is short."""
    return await conn.fetchval(_RESERVE, account_id, campaign_id, amount) is not None


async def pause_short(conn: Executor, campaign_id: str, reason: dict[str, Any]) -> asyncpg.Record | None:
    """Pause a live campaign whose next send its money cannot cover, saying so (None when it is no
    longer live)."""
    return await conn.fetchrow(_PAUSE_SHORT, campaign_id, reason)


async def refund(conn: Connection, campaign_ids: list[str]) -> None:
    """Return what the campaigns hold back to their accounts' balances."""
    if campaign_ids:
        await conn.execute(_REFUND, campaign_ids)


async def charge_reply(conn: Executor, account_id: str, channel: str, units: int, always: bool) -> Decimal | None:
    """Charge the account for one answer sent to a contact on `channel` (an SMS of `units`
    segments, or one email): what it cost, or None when the balance cannot cover it (nothing
    charged). `always` (a compliance answer, which carriers and the law expect sent) charges it
    anyway, below zero if need be."""
    cost: Decimal | None = await conn.fetchval(_CHARGE_REPLY, account_id, units, channel, always)
    return cost


async def reply_shortfall(conn: Executor, account_id: str, channel: str, units: int) -> asyncpg.Record | None:
    """The account's balance and what an answer on `channel` of `units` would cost (why a reply's
    charge was refused); None for no such account."""
    return await conn.fetchrow(_REPLY_SHORTFALL, account_id, units, channel)


async def refund_reply(conn: Executor, account_id: str, cost: Decimal) -> None:
    """Give back what an answer that could not be sent was charged."""
    await conn.execute(_REFUND_REPLY, account_id, cost)
