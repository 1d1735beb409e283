"""What an operator does to accounts from the command line (`campaigns accounts …`): create one,
list them, credit a balance, issue, list and revoke API keys. Each migrates the database first if
needed, as every command does, and works in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import accounts
from shared.db.connection import Connection
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.domain.times import iso
from shared.domain.zones import is_valid_zone
from shared.errors import Conflict, Invalid, NotFound

#: The largest balance the database holds (numeric(14, 4)).
MAX_BALANCE = Decimal("9999999999.9999")


@asynccontextmanager
async def _transaction(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(database_url)
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            yield conn
    finally:
        await conn.close()


async def create_account(
    database_url: str, name: str, balance: Decimal, timezone: str, reuse: bool = False
) -> tuple[str, str]:
    """Create an account (or, with `reuse`, take the one of that name) and a new API key for it.
    Refused (Invalid) before anything is written: an empty name, a balance below 0 or with more
    than 4 decimals or beyond what the database holds, a time zone that is no IANA name."""
    if not name.strip():
        raise Invalid("the account's name must not be empty")
    if not _four_decimals(balance) or balance < 0:
        raise Invalid(f"the balance must be a number of at least 0 with at most 4 decimals, not {balance}")
    if balance > MAX_BALANCE:
        raise Invalid(f"the balance must be at most {MAX_BALANCE}")
    if not is_valid_zone(timezone):
        raise Invalid(f"{timezone!r} is not an IANA time zone name (e.g. Europe/Paris)")
    async with _transaction(database_url) as conn:
        existing = await accounts.find_by_name(conn, name) if reuse else None
        account_id = existing or await accounts.create_account(conn, name, balance, timezone)
        key = await accounts.create_key(conn, account_id)
    return account_id, key


async def balance_of(database_url: str, account_id: str) -> Decimal:
    """The account's balance now."""
    async with _transaction(database_url) as conn:
        return Decimal((await _account(conn, account_id))["balance"])


async def list_accounts(database_url: str) -> list[dict[str, Any]]:
    """Every account, oldest first: id, name, balance, reserved, default time zone, live keys."""
    async with _transaction(database_url) as conn:
        rows = await accounts.list_all(conn)
    return [
        {
            "account_id": r["id"],
            "name": r["name"],
            "balance": str(r["balance"]),
            "reserved": str(r["reserved"]),
            "default_timezone": r["default_timezone"],
            "keys": r["keys"],
            "created_at": iso(r["created_at"]),
        }
        for r in rows
    ]


async def credit(database_url: str, account_id: str, amount: Decimal) -> Decimal:
    """Add `amount` (more than 0, at most 4 decimals) to the account's balance: the new balance."""
    if not _four_decimals(amount) or amount <= 0:
        raise Invalid(f"the amount must be a number above 0 with at most 4 decimals, not {amount}")
    async with _transaction(database_url) as conn:
        balance = Decimal((await _account(conn, account_id))["balance"])
        if balance + amount > MAX_BALANCE:
            raise Invalid(f"the balance would exceed {MAX_BALANCE} (it is {balance})")
        new = await accounts.credit(conn, account_id, amount)
    assert new is not None  # the account was read in this transaction
    return new


async def create_key(database_url: str, account_id: str) -> str:
    """A new API key for the account (shown once; only its hash is kept)."""
    async with _transaction(database_url) as conn:
        await _account(conn, account_id)
        return await accounts.create_key(conn, account_id)


async def list_keys(database_url: str, account_id: str) -> list[dict[str, Any]]:
    """The account's keys, oldest first: prefix, created, revoked (null while live)."""
    async with _transaction(database_url) as conn:
        await _account(conn, account_id)
        return [_key(r) for r in await accounts.keys(conn, account_id)]


async def revoke_key(database_url: str, account_id: str, key_or_prefix: str) -> dict[str, Any]:
    """Revoke the account's live key named by the whole key or by its prefix (as `list_keys`
    shows it): it stops working at once, and so do the dashboard sessions signed in with it."""
    async with _transaction(database_url) as conn:
        await _account(conn, account_id)
        return _key(await revoke_on(conn, account_id, key_or_prefix))


async def revoke_on(conn: Connection, account_id: str, key_or_prefix: str, keep_one: bool = False) -> asyncpg.Record:
    """`revoke_key` inside the caller's transaction: the revoked key's row (prefix, times).
    NotFound for no such live key, Conflict for a prefix two live keys share, and with `keep_one`
    for the account's last live key."""
    found = await accounts.live_keys(conn, account_id, key_or_prefix)
    if not found:
        raise NotFound(f"account {account_id} has no live key {key_or_prefix!r} (a whole key, or its prefix)")
    if len(found) > 1:
        raise Conflict(f"{len(found)} live keys start with {key_or_prefix!r}: give the whole key")
    if keep_one and sum(1 for k in await accounts.keys(conn, account_id) if k["revoked_at"] is None) == 1:
        raise Conflict(f"{key_or_prefix!r} is the account's last live key: issue another one first")
    return await accounts.revoke(conn, found[0]["key_hash"])


def _four_decimals(amount: Decimal) -> bool:
    """Whether `amount` is a number the balance holds exactly (at most 4 decimals)."""
    return amount.is_finite() and amount == amount.quantize(Decimal("0.0001"))


async def _account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    account = await accounts.get(conn, account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def _key(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "prefix": row["prefix"],
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
    }
