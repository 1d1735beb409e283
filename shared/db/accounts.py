"""Accounts and their API keys (stored as SHA-256 hashes; a key is shown once, at creation)."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

import asyncpg

from shared.ids import new_id

_INSERT_ACCOUNT = """
INSERT INTO accounts (id, name, balance, default_timezone) VALUES ($1, $2, $3, $4)
"""
_INSERT_KEY = "INSERT INTO api_keys (key_hash, account_id, prefix) VALUES ($1, $2, $3)"
_ACCOUNT_FOR_KEY = """
SELECT a.* FROM api_keys k JOIN accounts a ON a.id = k.account_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""
_GET = "SELECT * FROM accounts WHERE id = $1"
_BY_NAME = "SELECT id FROM accounts WHERE name = $1 ORDER BY created_at LIMIT 1"


def hash_key(key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).digest()


async def create_account(
    conn: asyncpg.Connection, name: str, balance: Decimal, timezone: str = "Asia/Kolkata"
) -> str:
    """A new account's id."""
    account_id = new_id("account")
    await conn.execute(_INSERT_ACCOUNT, account_id, name, balance, timezone)
    return account_id


async def create_key(conn: asyncpg.Connection, account_id: str) -> str:
    """A new API key for the account; only its hash is kept."""
    key = "sk_" + secrets.token_urlsafe(32)
    await conn.execute(_INSERT_KEY, hash_key(key), account_id, key[:8])
    return key


async def account_for_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> asyncpg.Record | None:
    """The account an API key belongs to, or None."""
    return await conn.fetchrow(_ACCOUNT_FOR_KEY, hash_key(key))


async def get(conn: asyncpg.Connection | asyncpg.Pool, account_id: str) -> asyncpg.Record | None:
    """One account."""
    return await conn.fetchrow(_GET, account_id)


async def find_by_name(conn: asyncpg.Connection, name: str) -> str | None:
    """The oldest account of that name."""
    return await conn.fetchval(_BY_NAME, name)
