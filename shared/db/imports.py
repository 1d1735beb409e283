"""CSV import, the database side: COPY a batch into a session temp table, then upsert it at once.

Counting: a contact counts as `created` when inserted and as `updated` the first time this import
touches it; a contact created or already updated by an earlier row of the same import (its
`updated_at` is not older than the import's start) is a duplicate and counts for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

#: Columns of the staging table, in the order of a staged row (see shared.domain.contact_csv).
STAGE_COLUMNS = ("id", "line", "phone", "email", "first_name", "last_name", "company", "timezone", "meta")

#: Tries of a batch's upsert (a clash of emails, or a deadlock with another writer, costs one).
ATTEMPTS = 4

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS contact_import_rows (
    id text NOT NULL, line integer NOT NULL, phone text, email text, first_name text, last_name text,
    company text, timezone text, meta text[]
) ON COMMIT DELETE ROWS
"""
_DROP_STAGE = "DROP TABLE IF EXISTS contact_import_rows"
_NOW = "SELECT now()"
_ACCOUNT_EXISTS = "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)"
_GROUP_EXISTS = "SELECT EXISTS (SELECT 1 FROM contact_groups WHERE account_id = $1 AND id = $2)"

# Phone rows whose email already belongs to another contact. A contact known by that email alone
# (and no contact with the phone) is not a clash: it gains the phone (`attach`).
_EMAIL_OWNERS = """
WITH src AS (
    SELECT DISTINCT ON (phone) line, phone, email FROM contact_import_rows
    WHERE phone IS NOT NULL AND email IS NOT NULL ORDER BY phone, line DESC
)
SELECT o.* FROM (
    SELECT s.line, s.phone, s.email, e.id AS owner_id, e.phone AS owner_phone,
           (SELECT p.id FROM contacts p WHERE p.account_id = $1 AND p.phone = s.phone) AS phone_owner,
           false AS repeated
    FROM src s
    CROSS JOIN LATERAL (  -- LIMIT keeps it an index lookup per row, whatever the statistics say
        SELECT e.id, e.phone FROM contacts e WHERE e.account_id = $1 AND e.email = s.email LIMIT 1
    ) e
) o
WHERE o.owner_id IS DISTINCT FROM o.phone_owner
UNION ALL
SELECT d.line, d.phone, d.email, NULL, d.first_phone, NULL, true
FROM (
    SELECT s.line, s.phone, s.email, first_value(s.phone) OVER w AS first_phone, row_number() OVER w AS n
    FROM src s WINDOW w AS (PARTITION BY s.email ORDER BY s.line)
) d
WHERE d.n > 1
"""
_DROP_LINES = "DELETE FROM contact_import_rows WHERE line = ANY($1::int[])"
_ATTACH = """
UPDATE contacts c SET phone = u.phone
FROM unnest($2::text[], $3::text[]) AS u(id, phone)
WHERE c.account_id = $1 AND c.id = u.id AND c.phone IS NULL
"""
_UPSERT_PHONES = """
WITH src AS (
    SELECT DISTINCT ON (phone) * FROM contact_import_rows
    WHERE phone IS NOT NULL ORDER BY phone, line DESC
), up AS (
    INSERT INTO contacts AS c (id, account_id, phone, email, first_name, last_name, company,
                               timezone, metadata)
    SELECT s.id, $1, s.phone, s.email, s.first_name, s.last_name, s.company, s.timezone,
           COALESCE(jsonb_strip_nulls(jsonb_object($2::text[], s.meta)), '{}')
    FROM src s
    ON CONFLICT (account_id, phone) DO UPDATE SET
        email = COALESCE(EXCLUDED.email, c.email),
        first_name = COALESCE(EXCLUDED.first_name, c.first_name),
        last_name = COALESCE(EXCLUDED.last_name, c.last_name),
        company = COALESCE(EXCLUDED.company, c.company),
        timezone = COALESCE(EXCLUDED.timezone, c.timezone),
        metadata = c.metadata || EXCLUDED.metadata,
        updated_at = now()
    RETURNING c.id, c.created_at, (xmax = 0) AS inserted
), grouped AS (
    INSERT INTO group_members (group_id, contact_id)
    SELECT $3, id FROM up WHERE $3::text IS NOT NULL ON CONFLICT DO NOTHING
)
SELECT count(*) FILTER (WHERE up.inserted) AS created,
       -- the main query still sees the rows as they were before the statement: the last update
       count(*) FILTER (WHERE NOT up.inserted AND up.created_at < $4
                        AND (SELECT o.updated_at FROM contacts o WHERE o.id = up.id) < $4) AS updated
FROM up
"""
_UPSERT_EMAILS = """
WITH src AS (
    SELECT DISTINCT ON (email) * FROM contact_import_rows
    WHERE phone IS NULL ORDER BY email, line DESC
), up AS (
    INSERT INTO contacts AS c (id, account_id, email, first_name, last_name, company, timezone,
                               metadata)
    SELECT s.id, $1, s.email, s.first_name, s.last_name, s.company, s.timezone,
           COALESCE(jsonb_strip_nulls(jsonb_object($2::text[], s.meta)), '{}')
    FROM src s
    ON CONFLICT (account_id, email) DO UPDATE SET
        first_name = COALESCE(EXCLUDED.first_name, c.first_name),
        last_name = COALESCE(EXCLUDED.last_name, c.last_name),
        company = COALESCE(EXCLUDED.company, c.company),
        timezone = COALESCE(EXCLUDED.timezone, c.timezone),
        metadata = c.metadata || EXCLUDED.metadata,
        updated_at = now()
    RETURNING c.id, c.created_at, (xmax = 0) AS inserted
), grouped AS (
    INSERT INTO group_members (group_id, contact_id)
    SELECT $3, id FROM up WHERE $3::text IS NOT NULL ON CONFLICT DO NOTHING
)
SELECT count(*) FILTER (WHERE up.inserted) AS created,
       -- the main query still sees the rows as they were before the statement: the last update
       count(*) FILTER (WHERE NOT up.inserted AND up.created_at < $4
                        AND (SELECT o.updated_at FROM contacts o WHERE o.id = up.id) < $4) AS updated
FROM up
"""


@dataclass
class BatchResult:
    """What one batch did: counts, and the rows refused because their email is someone else's."""

    created: int = 0
    updated: int = 0
    clashes: list[tuple[int, str, str | None]] = field(default_factory=list)  # (line, email, other phone)


async def account_exists(conn: asyncpg.Connection, account_id: str) -> bool:
    """Whether the account exists."""
    return bool(await conn.fetchval(_ACCOUNT_EXISTS, account_id))


async def group_exists(conn: asyncpg.Connection, account_id: str, group_id: str) -> bool:
    """Whether the group is the account's."""
    return bool(await conn.fetchval(_GROUP_EXISTS, account_id, group_id))


async def begin(conn: asyncpg.Connection) -> datetime:
    """Prepare the session's staging table; the import's start (for telling updates from repeats)."""
    await conn.execute(_CREATE_STAGE)
    started: datetime = await conn.fetchval(_NOW)
    return started


async def end(conn: asyncpg.Connection) -> None:
    """Drop the staging table."""
    await conn.execute(_DROP_STAGE)


async def upsert_batch(
    conn: asyncpg.Connection,
    account_id: str,
    rows: Sequence[tuple[Any, ...]],
    metadata_keys: Sequence[str],
    group_id: str | None,
    started: datetime,
) -> BatchResult:
    """Upsert staged rows in one transaction: by phone, else by email (the last row of a phone wins)."""
    result = BatchResult()
    ids = os.urandom(8 * len(rows)).hex()  # new_id("contact") for each row, in one call
    staged = [("ct_" + ids[16 * i : 16 * i + 16], *row) for i, row in enumerate(rows)]
    keys = list(metadata_keys)
    async with conn.transaction():
        await conn.copy_records_to_table("contact_import_rows", records=staged, columns=STAGE_COLUMNS)
        for attempt in range(ATTEMPTS):
            try:
                async with conn.transaction():  # a savepoint: a failed attempt leaves nothing behind
                    # Optimistic first: most batches clash with no one. A unique violation on
                    # email (or a deadlock with a concurrent writer) sends us round again.
                    clashes = await _settle_emails(conn, account_id) if attempt else []
                    by_phone = await conn.fetchrow(_UPSERT_PHONES, account_id, keys, group_id, started)
                    by_email = await conn.fetchrow(_UPSERT_EMAILS, account_id, keys, group_id, started)
                break
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                if attempt == ATTEMPTS - 1:
                    raise
    result.clashes = clashes
    result.created = by_phone["created"] + by_email["created"]
    result.updated = by_phone["updated"] + by_email["updated"]
    return result


async def _settle_emails(conn: asyncpg.Connection, account_id: str) -> list[tuple[int, str, str | None]]:
    """Drop the staged phone rows whose email is another contact's; give the phone to contacts
    known by that email alone. Returns the dropped rows as (line, email, other phone)."""
    clashes: list[tuple[int, str, str | None]] = []
    attach: dict[str, str] = {}  # contact known by email alone → the phone it gains
    while True:  # dropping a row can make an earlier row of its phone the one that counts
        refused: dict[int, tuple[int, str, str | None]] = {}
        attach.clear()
        owners = await conn.fetch(_EMAIL_OWNERS, account_id)
        repeated = {r["line"] for r in owners if r["repeated"]}
        for r in sorted(owners, key=lambda r: (r["repeated"], r["line"])):
            if r["line"] in refused:
                continue
            free = r["phone_owner"] is None and r["owner_phone"] is None
            if r["line"] not in repeated and free and r["owner_id"] not in attach:
                attach[r["owner_id"]] = r["phone"]
            else:
                refused[r["line"]] = (r["line"], r["email"], r["owner_phone"])
        if not refused:
            break
        await conn.execute(_DROP_LINES, list(refused))
        clashes.extend(refused.values())
    if attach:
        await conn.execute(_ATTACH, account_id, list(attach), list(attach.values()))
    return sorted(clashes)
