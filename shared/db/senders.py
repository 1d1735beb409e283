"""Sender identities (the phones and email addresses an account sends from) and the account's
figures shown beside them; every query scoped to the account."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

import asyncpg

from shared.db.connection import Executor

#: (with the column's 4 decimals when no campaign holds anything, as the other amounts have them)
_RESERVED = "SELECT COALESCE(sum(reserved), 0)::numeric(14, 4) FROM campaigns WHERE account_id = $1"
_UPDATE_ACCOUNT = """
UPDATE accounts SET default_timezone = COALESCE($2, default_timezone), quiet_hours = COALESCE($3, quiet_hours)
WHERE id = $1 RETURNING *
"""
#: A sender claimed by the account: verified now ($4), or pending its verification.
_INSERT = """
INSERT INTO sender_identities (account_id, kind, address, verified_at, max_per_second)
VALUES ($1, $2, $3, CASE WHEN $4::boolean THEN now() END, $5)
ON CONFLICT (account_id, kind, address) DO UPDATE
SET verified_at = COALESCE(sender_identities.verified_at, EXCLUDED.verified_at),
    max_per_second = CASE WHEN $6::boolean THEN EXCLUDED.max_per_second ELSE sender_identities.max_per_second END
RETURNING *, (xmax = 0) AS created
"""
_OWNER = "SELECT account_id FROM sender_identities WHERE kind = $1 AND address = $2 AND verified_at IS NOT NULL"
_VERIFY = """
UPDATE sender_identities SET verified_at = COALESCE(verified_at, now())
WHERE account_id = $1 AND kind = $2 AND address = $3
RETURNING *, false AS created
"""
_SET_RATE = """
UPDATE sender_identities SET max_per_second = $3
WHERE account_id = $1 AND address = $2
RETURNING *, false AS created
"""
_LIST = "SELECT * FROM sender_identities WHERE account_id = $1 ORDER BY created_at, address"
#: A page of them in the same order, after the cursor `(created_at, address)`: an address is one
#: sender of an account at most (a phone has no `@`, an email has one).
_PAGE = """
SELECT * FROM sender_identities
WHERE account_id = $1 AND ($2::timestamptz IS NULL OR (created_at, address) > ($2, $3))
ORDER BY created_at, address
LIMIT $4
"""
_DELETE = "DELETE FROM sender_identities WHERE account_id = $1 AND address = $2 RETURNING address"
_IN_USE = """
SELECT id FROM campaigns
WHERE account_id = $1 AND lower(from_number) = lower($2)
  AND status NOT IN ('completed', 'cancelled', 'failed')
LIMIT 1
"""
_VERIFIED = "SELECT 1 FROM sender_identities WHERE account_id = $1 AND address = $2 AND verified_at IS NOT NULL"


async def reserved(conn: Executor, account_id: str) -> Decimal:
    """What the account's launched campaigns hold back from its balance."""
    return cast(Decimal, await conn.fetchval(_RESERVED, account_id))


async def update_account(
    conn: Executor, account_id: str, default_timezone: str | None, quiet_hours: bool | None
) -> asyncpg.Record:
    """Change the account's defaults (None leaves one as it is)."""
    return cast(asyncpg.Record, await conn.fetchrow(_UPDATE_ACCOUNT, account_id, default_timezone, quiet_hours))


async def insert(
    conn: Executor,
    account_id: str,
    kind: str,
    address: str,
    verified: bool,
    max_per_second: float | None = None,
    rate_given: bool = False,
) -> asyncpg.Record:
    """Add (or keep) a sender, verified now or pending (one verified stays so), with its rate when
    `rate_given`; `created` says whether it is new. UniqueViolationError when verifying an address
    another account verified."""
    row = await conn.fetchrow(_INSERT, account_id, kind, address, verified, max_per_second, rate_given)
    return cast(asyncpg.Record, row)


async def owner(conn: Executor, kind: str, address: str) -> str | None:
    """The account that has `address` as a verified sender, if any (one at most)."""
    found: str | None = await conn.fetchval(_OWNER, kind, address)
    return found


async def verify(conn: Executor, account_id: str, kind: str, address: str) -> asyncpg.Record | None:
    """Mark the account's sender verified (once; None when it has no such sender).
    UniqueViolationError when another account verified the address first."""
    return await conn.fetchrow(_VERIFY, account_id, kind, address)


async def list_all(conn: Executor, account_id: str) -> list[asyncpg.Record]:
    """The account's senders, oldest first."""
    return await conn.fetch(_LIST, account_id)


async def page(conn: Executor, account_id: str, after: tuple[datetime, str] | None, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` of the account's senders, oldest first, after the cursor `(created_at, address)`."""
    created, address = after if after else (None, None)
    return list(await conn.fetch(_PAGE, account_id, created, address, limit))


async def delete(conn: Executor, account_id: str, address: str) -> bool:
    """Remove a sender; False if the account has none of that address."""
    return await conn.fetchval(_DELETE, account_id, address) is not None


async def campaign_sending_from(conn: Executor, account_id: str, address: str) -> str | None:
    """A campaign of the account, not yet ended, that sends from `address`."""
    found: str | None = await conn.fetchval(_IN_USE, account_id, address)
    return found


async def is_verified(conn: Executor, account_id: str, address: str) -> bool:
    """Whether `address` is a verified sender of the account."""
    return bool(await conn.fetchval(_VERIFIED, account_id, address))


async def set_rate(
    conn: Executor, account_id: str, address: str, max_per_second: float | None
) -> asyncpg.Record | None:
    """Set a sender's `max_per_second` (None: the default for its kind); the row, None if no such sender."""
    return await conn.fetchrow(_SET_RATE, account_id, address, max_per_second)
