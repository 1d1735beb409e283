"""Accounts and their API keys (stored as SHA-256 hashes; a key is shown once, at creation)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from decimal import Decimal

import asyncpg

from shared.db.connection import Connection, Executor
from shared.ids import new_id

_INSERT_ACCOUNT = """
INSERT INTO accounts (id, name, balance, default_timezone) VALUES ($1, $2, $3, $4)
"""
_INSERT_KEY = "INSERT INTO api_keys (key_hash, account_id, prefix) VALUES ($1, $2, $3)"
_ACCOUNT_FOR_KEY = """
SELECT a.*, k.key_hash AS api_key_hash FROM api_keys k JOIN accounts a ON a.id = k.account_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""
_GET = "SELECT * FROM accounts WHERE id = $1"
_START_SESSION = """
WITH gone AS (DELETE FROM dashboard_sessions WHERE expires_at < now())
INSERT INTO dashboard_sessions (token_hash, key_hash, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
"""
_ACCOUNT_FOR_SESSION = """
SELECT a.*, k.key_hash AS api_key_hash FROM dashboard_sessions s
JOIN api_keys k ON k.key_hash = s.key_hash AND k.revoked_at IS NULL
JOIN accounts a ON a.id = k.account_id
WHERE s.token_hash = $1 AND s.expires_at > now()
"""
_END_SESSION = "DELETE FROM dashboard_sessions WHERE token_hash = $1"
_BY_NAME = "SELECT id FROM accounts WHERE name = $1 ORDER BY created_at LIMIT 1"
_LIST = """
SELECT a.id, a.name, a.balance, a.default_timezone, a.created_at,
       (SELECT coalesce(sum(c.reserved), 0)::numeric(14, 4) FROM campaigns c WHERE c.account_id = a.id) AS reserved,
       (SELECT count(*) FROM api_keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL) AS keys
FROM accounts a ORDER BY a.created_at, a.id
"""
_CREDIT = "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance"
_KEYS = """
SELECT key_hash, prefix, created_at, revoked_at FROM api_keys WHERE account_id = $1 ORDER BY created_at, prefix
"""
#: A page of them in the same order, after the cursor `(created_at, prefix)`. The key's hash would
#: make the order total, but a cursor never carries it: two keys of one account made in the same
#: microsecond with the same prefix (five random characters after `sk_`) is not worth showing it.
_KEYS_PAGE = """
SELECT key_hash, prefix, created_at, revoked_at FROM api_keys
WHERE account_id = $1 AND ($2::timestamptz IS NULL OR (created_at, prefix) > ($2, $3))
ORDER BY created_at, prefix
LIMIT $4
"""
# A key named by itself (its hash) or by the prefix a list shows; only those not revoked yet.
_LIVE_KEYS = """
SELECT key_hash, prefix FROM api_keys
WHERE account_id = $1 AND revoked_at IS NULL AND (key_hash = $2 OR prefix = $3)
FOR UPDATE
"""
_REVOKE = "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 RETURNING prefix, created_at, revoked_at"


def hash_key(key: str) -> bytes:
    """The stored form of an API key (and of a dashboard session token)."""
    return hashlib.sha256(key.encode()).digest()


async def create_account(conn: Connection, name: str, balance: Decimal, timezone: str = "Asia/Kolkata") -> str:
    """A new account's id."""
    account_id = new_id("account")
    await conn.execute(_INSERT_ACCOUNT, account_id, name, balance, timezone)
    return account_id


async def create_key(conn: Executor, account_id: str) -> str:
    """A new API key for the account; only its hash is kept."""
    key = "sk_" + secrets.token_urlsafe(32)
    await conn.execute(_INSERT_KEY, hash_key(key), account_id, key[:8])
    return key


async def account_for_key(conn: Executor, key: str) -> asyncpg.Record | None:
    """The account an API key belongs to (with `api_key_hash`, the key's), or None."""
    return await conn.fetchrow(_ACCOUNT_FOR_KEY, hash_key(key))


async def start_session(conn: Executor, key: str, lifetime_s: float) -> str:
    """A new dashboard session for a (checked) API key: its token, for a cookie. Only the token's
    hash is stored; expired sessions are swept on the way."""
    token = secrets.token_urlsafe(32)
    await conn.execute(_START_SESSION, hash_key(token), hash_key(key), lifetime_s)
    return token


async def account_for_session(conn: Executor, token: str) -> asyncpg.Record | None:
    """The account of a live session (not expired, its key not revoked; with `api_key_hash`, the
    hash of the key it signed in with), or None."""
    return await conn.fetchrow(_ACCOUNT_FOR_SESSION, hash_key(token))


async def end_session(conn: Executor, token: str) -> None:
    """Sign a session out."""
    await conn.execute(_END_SESSION, hash_key(token))


async def get(conn: Executor, account_id: str) -> asyncpg.Record | None:
    """One account."""
    return await conn.fetchrow(_GET, account_id)


async def list_all(conn: Executor) -> list[asyncpg.Record]:
    """Every account, oldest first, with what its campaigns hold back (`reserved`) and how many
    live API keys it has (`keys`)."""
    return list(await conn.fetch(_LIST))


async def credit(conn: Executor, account_id: str, amount: Decimal) -> Decimal | None:
    """Add `amount` to the account's balance: the new balance, or None for an unknown account."""
    balance: Decimal | None = await conn.fetchval(_CREDIT, account_id, amount)
    return balance


async def keys(conn: Executor, account_id: str) -> list[asyncpg.Record]:
    """The account's API keys (hash, prefix, created, revoked), oldest first; never the keys."""
    return list(await conn.fetch(_KEYS, account_id))


async def keys_page(
    conn: Executor, account_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` of the account's API keys (hash, prefix, created, revoked), oldest first,
    after the cursor `(created_at, prefix)`; never the keys."""
    created, prefix = after if after else (None, None)
    return list(await conn.fetch(_KEYS_PAGE, account_id, created, prefix, limit))


async def live_keys(conn: Connection, account_id: str, key_or_prefix: str) -> list[asyncpg.Record]:
    """The account's live keys that `key_or_prefix` names (a whole key, or the prefix a list
    shows), row-locked (inside a transaction) to revoke."""
    return list(await conn.fetch(_LIVE_KEYS, account_id, hash_key(key_or_prefix), key_or_prefix))


async def revoke(conn: Executor, key_hash: bytes) -> asyncpg.Record:
    """Revoke one key (its dashboard sessions end with it): its prefix and times."""
    row = await conn.fetchrow(_REVOKE, key_hash)
    assert row is not None  # a live key, locked by `live_keys` in this transaction
    return row


async def find_by_name(conn: Connection, name: str) -> str | None:
    """The oldest account of that name."""
    account_id: str | None = await conn.fetchval(_BY_NAME, name)
    return account_id
