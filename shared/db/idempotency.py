"""Idempotency keys: one row per (account, key) with the request's fingerprint and first answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import LiteralString

from shared.db.connection import Executor

# Reserve the key. A row past its lifetime, or a reservation whose request died without answering,
# is taken over; any other existing row is left alone and nothing is returned.
_RESERVE: LiteralString = """
INSERT INTO idempotency_keys AS k (account_id, key, method, path, body_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (account_id, key) DO UPDATE SET
    method = EXCLUDED.method, path = EXCLUDED.path, body_hash = EXCLUDED.body_hash,
    status = NULL, headers = '{}', body = NULL, created_at = clock_timestamp(), completed_at = NULL
WHERE k.created_at < now() - $6::interval
   OR (k.status IS NULL AND k.created_at < now() - $7::interval)
RETURNING k.created_at
"""
_FIND: LiteralString = """
SELECT method, path, body_hash, status, headers, body FROM idempotency_keys
WHERE account_id = $1 AND key = $2
"""
_COMPLETE: LiteralString = """
UPDATE idempotency_keys SET status = $4, headers = $5, body = $6, completed_at = now()
WHERE account_id = $1 AND key = $2 AND created_at = $3 AND status IS NULL
"""
_RELEASE: LiteralString = """
DELETE FROM idempotency_keys
WHERE account_id = $1 AND key = $2 AND created_at = $3 AND status IS NULL
"""
_PURGE: LiteralString = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval LIMIT $2
))
"""

#: How long a key answers with its first response.
TTL = timedelta(hours=24)
#: After this long without an answer, a reservation is taken to be abandoned (its process died).
ABANDONED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Stored:
    """What a key holds: the first request's fingerprint and, once it finished, its answer."""

    method: str
    path: str
    body_hash: bytes
    status: int | None
    headers: dict[str, str]
    body: bytes | None


async def reserve(db: Executor, account_id: str, key: str, method: str, path: str, body_hash: bytes) -> datetime | None:
    """Claim the key for this request (committed at once): its token, or None if it is held."""
    token: datetime | None = await db.fetchval(_RESERVE, account_id, key, method, path, body_hash, TTL, ABANDONED_AFTER)
    return token


async def find(db: Executor, account_id: str, key: str) -> Stored | None:
    """What the key holds, or None."""
    row = await db.fetchrow(_FIND, account_id, key)
    return None if row is None else Stored(**dict(row))


async def complete(
    db: Executor,
    account_id: str,
    key: str,
    token: datetime,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Store the answer of the request that reserved the key with `token`."""
    await db.execute(_COMPLETE, account_id, key, token, status, headers, body)


async def release(db: Executor, account_id: str, key: str, token: datetime) -> None:
    """Drop the reservation (the request failed) so that a retry can run."""
    await db.execute(_RELEASE, account_id, key, token)


async def purge_expired(db: Executor, batch: int = 1000) -> int:
    """Delete up to `batch` keys older than `TTL`; how many went."""
    result: str = await db.execute(_PURGE, TTL, batch)
    return int(result.split()[-1])
