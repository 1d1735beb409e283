"""Balance: a launch reserves a run's estimate; each send is charged from the reservation (the
balance once it is used up) as its cost is set; what a finished run did not use goes back to the
balance."""

from __future__ import annotations

from decimal import Decimal

from shared.db.connection import Connection, Executor

_RESERVE = """
WITH a AS (
    UPDATE accounts SET balance = balance - $3 WHERE id = $1 AND balance >= $3 RETURNING id
)
UPDATE campaigns c SET reserved = c.reserved + $3 FROM a WHERE c.id = $2 AND c.account_id = a.id
RETURNING c.id
"""
# Setting a delivery's cost charges it, in the same statement (migration 0010's trigger takes it
# from the campaign's reservation, then from the balance): only the first time.
_CHARGE = "UPDATE deliveries SET cost = $2 WHERE id = $1 AND cost IS NULL"
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


async def charge(conn: Executor, delivery_id: str, cost: Decimal) -> None:
    """Charge one send, once (a delivery's cost is set only the first time)."""
    await conn.execute(_CHARGE, delivery_id, cost)


async def refund(conn: Connection, campaign_ids: list[str]) -> None:
    """Return what the campaigns hold back to their accounts' balances."""
    if campaign_ids:
        await conn.execute(_REFUND, campaign_ids)
