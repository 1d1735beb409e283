"""CSV import, the database side: a batch of staged contact rows (see shared.domain.contact_csv)
goes straight into `contacts` by binary COPY while every contact is new, else into a session temp
table from which it is upserted at once.

Counting: a contact counts as `created` when inserted and as `updated` the first time this import
touches it; a contact created or already updated by an earlier row of the same import (its
`updated_at` is not older than the import's start) is a duplicate and counts for nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import LiteralString, cast

import asyncpg

from shared.db.connection import Connection
from shared.domain.contact_csv import STAGED_COLUMNS, StagedRow

#: Tries of a batch's upsert (a clash of emails, or a deadlock with another writer, costs one).
ATTEMPTS = 4

# The staged rows of one batch: contact rows, with the key columns in the byte order of contacts'.
# An import's ids sort as its lines (shared.domain.contact_csv.contact_id): `ORDER BY id` is file order.
_CREATE_STAGE = """
CREATE TEMP TABLE contact_import_rows (
    id text COLLATE "C" NOT NULL, account_id text NOT NULL, phone text COLLATE "C", email text COLLATE "C",
    first_name text, last_name text, company text, timezone text, metadata jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""
# The contacts an import matched and left unchanged so far (each counts as updated once).
_CREATE_SEEN = 'CREATE TEMP TABLE contact_import_seen (id text COLLATE "C" PRIMARY KEY)'
_DROP_STAGE = "DROP TABLE IF EXISTS contact_import_rows, contact_import_seen"
_NOW = "SELECT now()"
_ACCOUNT_EXISTS = "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)"
_GROUP_EXISTS = "SELECT EXISTS (SELECT 1 FROM contact_groups WHERE account_id = $1 AND id = $2)"

# Phone rows whose email already belongs to another contact. A contact known by that email alone
# (and no contact with the phone) is not a clash: it gains the phone (`attach`).
_EMAIL_OWNERS = """
WITH src AS (
    SELECT DISTINCT ON (phone) id, phone, email FROM contact_import_rows
    WHERE phone IS NOT NULL AND email IS NOT NULL ORDER BY phone, id DESC
)
SELECT o.* FROM (
    SELECT s.id, s.phone, s.email, e.id AS owner_id, e.phone AS owner_phone,
           (SELECT p.id FROM contacts p WHERE p.account_id = $1 AND p.phone = s.phone) AS phone_owner,
           false AS repeated
    FROM src s
    CROSS JOIN LATERAL (  -- LIMIT keeps it an index lookup per row, whatever the statistics say
        SELECT e.id, e.phone FROM contacts e WHERE e.account_id = $1 AND e.email = s.email LIMIT 1
    ) e
) o
WHERE o.owner_id IS DISTINCT FROM o.phone_owner
UNION ALL
SELECT d.id, d.phone, d.email, NULL, d.first_phone, NULL, true
FROM (
    SELECT s.id, s.phone, s.email, first_value(s.phone) OVER w AS first_phone, row_number() OVER w AS n
    FROM src s WINDOW w AS (PARTITION BY s.email ORDER BY s.id)
) d
WHERE d.n > 1
"""
_DROP_ROWS = "DELETE FROM contact_import_rows WHERE id = ANY($1::text[])"
_ATTACH = """
UPDATE contacts c SET phone = u.phone
FROM unnest($2::text[], $3::text[]) AS u(id, phone)
WHERE c.account_id = $1 AND c.id = u.id AND c.phone IS NULL
"""
# Upsert of the staged rows known by `{key}` (`{filter}`); a batch holds one row per phone (or
# email), see shared.contact_import. A row that would change nothing writes nothing (no new row
# version, no index entries: a re-imported file is mostly such rows); the contact it matches still
# counts as updated, once per import (`contact_import_seen`: every row of one contact goes through
# the same connection), and still joins the group.
_UPSERT = """
WITH src AS (
    SELECT * FROM contact_import_rows WHERE {filter}
), up AS (
    INSERT INTO contacts AS c (id, account_id, {columns}, first_name, last_name, company, timezone, metadata)
    SELECT s.id, $1, {values}, s.first_name, s.last_name, s.company, s.timezone, s.metadata
    FROM src s
    ON CONFLICT (account_id, {key}) DO UPDATE SET{email}
        first_name = COALESCE(EXCLUDED.first_name, c.first_name),
        last_name = COALESCE(EXCLUDED.last_name, c.last_name),
        company = COALESCE(EXCLUDED.company, c.company),
        timezone = COALESCE(EXCLUDED.timezone, c.timezone),
        metadata = c.metadata || EXCLUDED.metadata,
        updated_at = now()
    WHERE ({new_email}COALESCE(EXCLUDED.first_name, c.first_name), COALESCE(EXCLUDED.last_name, c.last_name),
           COALESCE(EXCLUDED.company, c.company), COALESCE(EXCLUDED.timezone, c.timezone),
           c.metadata || EXCLUDED.metadata)
          IS DISTINCT FROM ({old_email}c.first_name, c.last_name, c.company, c.timezone, c.metadata)
    RETURNING c.id, c.{key} AS key, c.created_at, (xmax = 0) AS inserted
), unchanged AS (
    -- the rows `up` neither inserted nor updated, and their contacts (as they were: the other
    -- parts of the statement see the table as it was before it)
    SELECT o.id, o.created_at, o.updated_at
    FROM src s
    CROSS JOIN LATERAL (  -- LIMIT keeps it an index lookup per row, whatever the statistics say
        SELECT o.id, o.created_at, o.updated_at FROM contacts o WHERE o.account_id = $1 AND o.{key} = s.{key} LIMIT 1
    ) o
    WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.key = s.{key})
), first_seen AS (
    INSERT INTO contact_import_seen (id)
    SELECT id FROM unchanged WHERE created_at < $3 AND updated_at < $3
    ON CONFLICT DO NOTHING
    RETURNING id
), grouped AS (
    INSERT INTO group_members (group_id, contact_id)
    SELECT $2, id FROM (SELECT id FROM up UNION ALL SELECT id FROM unchanged) AS matched WHERE $2::text IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT (SELECT count(*) FROM up WHERE up.inserted) AS created,
       -- the last update before this statement: the main query still sees the rows as they were
       (SELECT count(*) FROM up WHERE NOT up.inserted AND up.created_at < $3
                                  AND (SELECT o.updated_at FROM contacts o WHERE o.id = up.id) < $3
                                  AND NOT EXISTS (SELECT 1 FROM contact_import_seen v WHERE v.id = up.id))
       + (SELECT count(*) FROM first_seen) AS updated
"""
_UPSERT_PHONES = _UPSERT.format(
    key="phone",
    filter="phone IS NOT NULL",
    columns="phone, email",
    values="s.phone, s.email",
    email="\n        email = COALESCE(EXCLUDED.email, c.email),",
    new_email="COALESCE(EXCLUDED.email, c.email), ",
    old_email="c.email, ",
)
_UPSERT_EMAILS = _UPSERT.format(
    key="email", filter="phone IS NULL", columns="email", values="s.email", email="", new_email="", old_email=""
)
# The members a batch of new contacts adds to the import's group.
_GROUP_NEW = "INSERT INTO group_members (group_id, contact_id) SELECT $1, unnest($2::text[])"


@dataclass
class BatchResult:
    """What one batch did: counts, and the rows refused because their email is someone else's."""

    created: int = 0
    updated: int = 0
    all_new: bool = False
    clashes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (staged id, email, other phone)


async def account_exists(conn: Connection, account_id: str) -> bool:
    """Whether the account exists."""
    return bool(await conn.fetchval(_ACCOUNT_EXISTS, account_id))


async def group_exists(conn: Connection, account_id: str, group_id: str) -> bool:
    """Whether the group is the account's."""
    return bool(await conn.fetchval(_GROUP_EXISTS, account_id, group_id))


async def begin(conn: Connection) -> datetime:
    """Create the session's staging tables; the import's start (for telling updates from repeats)."""
    await conn.execute(_DROP_STAGE)
    await conn.execute(_CREATE_STAGE)
    await conn.execute(_CREATE_SEEN)
    started: datetime = await conn.fetchval(_NOW)
    return started


async def end(conn: Connection) -> None:
    """Drop the staging tables."""
    await conn.execute(_DROP_STAGE)


def id_base() -> int:
    """A random base for one import's contact ids (62 bits: base + line stays a positive bigint)."""
    return secrets.randbits(62)


async def upsert_batch(
    conn: Connection,
    batch: Sequence[StagedRow],
    *,
    account_id: str,
    group_id: str | None,
    started: datetime,
    all_new: bool = False,
    settle_first: bool = False,
) -> BatchResult:
    """Upsert a batch of staged rows in one transaction: by phone, else by email (the last row of
    a phone wins).

    With `all_new`, the batch is first tried as new contacts: COPY straight into `contacts`, with
    no staging and no conflict checks (`result.all_new` says whether that held). A batch with any
    existing contact is rolled back there and upserted; so is one that deadlocked with another
    connection's batch (each waiting on a phone or email the other has not committed yet), whose
    rows the upsert then finds committed.
    """
    result = BatchResult()
    if all_new:
        try:
            async with conn.transaction():
                status = await conn.copy_records_to_table("contacts", records=batch, columns=STAGED_COLUMNS)
                if group_id is not None:
                    await conn.execute(_GROUP_NEW, group_id, [row[0] for row in batch])
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            pass  # an existing contact, or rows of another connection in the way: upsert the batch
        else:
            result.all_new, result.created = True, int(status.rsplit(" ", 1)[1])
            return result
    args = (account_id, group_id, started)
    async with conn.transaction():
        await conn.copy_records_to_table("contact_import_rows", records=batch, columns=STAGED_COLUMNS)
        for attempt in range(ATTEMPTS):
            try:
                async with conn.transaction():  # a savepoint: a failed attempt leaves nothing behind
                    # Optimistic first: most batches clash with no one. A unique violation on
                    # email (or a deadlock with a concurrent writer) sends us round again.
                    clashes = await _settle_emails(conn, account_id) if attempt or settle_first else []
                    # Each ends in an aggregate (the counts): always one row.
                    by_phone = cast(asyncpg.Record, await conn.fetchrow(_UPSERT_PHONES, *args))
                    by_email = cast(asyncpg.Record, await conn.fetchrow(_UPSERT_EMAILS, *args))
                break
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                if attempt == ATTEMPTS - 1:
                    raise
    result.clashes = clashes
    result.created = by_phone["created"] + by_email["created"]
    result.updated = by_phone["updated"] + by_email["updated"]
    return result


async def _settle_emails(conn: Connection, account_id: str) -> list[tuple[str, str, str | None]]:
    """Drop the staged phone rows whose email is another contact's; give the phone to contacts
    known by that email alone. Returns the dropped rows as (staged id, email, other phone), in
    file order."""
    clashes: list[tuple[str, str, str | None]] = []
    attach: dict[str, str] = {}  # contact known by email alone → the phone it gains
    while True:  # dropping a row can make an earlier row of its phone the one that counts
        refused: dict[str, tuple[str, str, str | None]] = {}
        attach.clear()
        owners = await conn.fetch(_EMAIL_OWNERS, account_id)
        repeated = {r["id"] for r in owners if r["repeated"]}
        for r in sorted(owners, key=lambda r: (r["repeated"], r["id"])):
            if r["id"] in refused:
                continue
            free = r["phone_owner"] is None and r["owner_phone"] is None
            if r["id"] not in repeated and free and r["owner_id"] not in attach:
                attach[r["owner_id"]] = r["phone"]
            else:
                refused[r["id"]] = (r["id"], r["email"], r["owner_phone"])
        if not refused:
            break
        await conn.execute(_DROP_ROWS, list(refused))
        clashes.extend(refused.values())
    if attach:
        await conn.execute(_ATTACH, account_id, list(attach), list(attach.values()))
    return sorted(clashes)


#: Advisory-lock namespace of import slots ("impt"); the second key is the account's slot.
_SLOT_SPACE = 0x696D7074
_TAKE_SLOT: LiteralString = "SELECT pg_try_advisory_lock($1, hashtext($2 || ':' || ($3::integer)::text))"
_RELEASE_SLOT: LiteralString = "SELECT pg_advisory_unlock($1, hashtext($2 || ':' || ($3::integer)::text))"


async def take_slot(conn: Connection, account_id: str, slots: int) -> int | None:
    """One of the account's `slots` import slots, held by this connection's session until
    `release_slot` (or until the connection ends: a crashed API gives its slots back); None when
    all are taken, by this or any other API replica."""
    for slot in range(slots):
        if await conn.fetchval(_TAKE_SLOT, _SLOT_SPACE, account_id, slot):
            return slot
    return None


async def release_slot(conn: Connection, account_id: str, slot: int) -> None:
    """Give back the slot `take_slot` took (before the connection returns to its pool)."""
    await conn.fetchval(_RELEASE_SLOT, _SLOT_SPACE, account_id, slot)
