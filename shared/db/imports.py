"""CSV import, the database side: COPY a batch (CSV text) into a session temp table, then
upsert it at once.

The staging table has one text column per metadata column of the file (`m0`, `m1`, …), so a
batch travels as the CSV text PostgreSQL parses itself. A contact's id is the import's random
base plus its line number (`ct_` and 16 hex digits, like `new_id("contact")`): one import's new
contacts sit side by side in the primary key's index instead of on random pages.

Counting: a contact counts as `created` when inserted and as `updated` the first time this import
touches it; a contact created or already updated by an earlier row of the same import (its
`updated_at` is not older than the import's start) is a duplicate and counts for nothing.
"""

from __future__ import annotations

import functools
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import asyncpg

from shared.db.connection import Connection

#: Columns of the staging table before the metadata ones, in the order of a staged row (see
#: shared.domain.contact_csv).
STAGE_COLUMNS = ("line", "phone", "email", "first_name", "last_name", "company", "timezone")

#: Tries of a batch's upsert (a clash of emails, or a deadlock with another writer, costs one).
ATTEMPTS = 4

_CREATE_STAGE = """
CREATE TEMP TABLE contact_import_rows (
    line integer NOT NULL, phone text, email text, first_name text, last_name text, company text,
    timezone text{metadata}
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
# Upsert of the staged rows known by `{key}` (`{filter}`); a batch holds one row per phone (or
# email), see shared.contact_import. Formatted per import by `Statements`.
_UPSERT = """
WITH src AS (
    SELECT * FROM contact_import_rows WHERE {filter}
), up AS (
    INSERT INTO contacts AS c (id, account_id, {columns}, first_name, last_name, company, timezone, metadata)
    SELECT 'ct_' || lpad(to_hex($5::bigint + s.line), 16, '0'), $1, {values}, s.first_name, s.last_name,
           s.company, s.timezone, COALESCE(jsonb_strip_nulls(jsonb_object($2::text[], {metadata})), '{{}}')
    FROM src s
    ON CONFLICT (account_id, {key}) DO UPDATE SET{email}
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


# The fast way for a batch of contacts none of which exists yet (a first import): a plain insert,
# without the upsert's conflict checks. Any unique violation rolls it back and the batch is upserted.
_INSERT_NEW = """
INSERT INTO contacts (id, account_id, phone, email, first_name, last_name, company, timezone, metadata)
SELECT 'ct_' || lpad(to_hex($3::bigint + s.line), 16, '0'), $1, s.phone, s.email, s.first_name, s.last_name,
       s.company, s.timezone, COALESCE(jsonb_strip_nulls(jsonb_object($2::text[], {metadata})), '{{}}')
FROM contact_import_rows s
ORDER BY s.email  -- emails land at random places in their index: in order, each leaf page is visited once
"""
_GROUP_NEW = """
INSERT INTO group_members (group_id, contact_id)
SELECT $1, 'ct_' || lpad(to_hex($2::bigint + s.line), 16, '0') FROM contact_import_rows s
"""


@dataclass(frozen=True)
class Statements:
    """The statements of an import whose file has `metadata` metadata columns."""

    create_stage: str
    columns: tuple[str, ...]
    insert_new: str
    upsert_phones: str
    upsert_emails: str


@functools.lru_cache(maxsize=64)
def statements(metadata: int) -> Statements:
    """The statements for a file with `metadata` metadata columns (staged as `m0`, `m1`, …)."""
    names = tuple(f"m{i}" for i in range(metadata))
    values = f"ARRAY[{', '.join('s.' + n for n in names)}]::text[]"
    return Statements(
        create_stage=_CREATE_STAGE.format(metadata="".join(f", {n} text" for n in names)),
        columns=STAGE_COLUMNS + names,
        insert_new=_INSERT_NEW.format(metadata=values),
        upsert_phones=_UPSERT.format(
            key="phone",
            filter="phone IS NOT NULL",
            columns="phone, email",
            values="s.phone, s.email",
            email="\n        email = COALESCE(EXCLUDED.email, c.email),",
            metadata=values,
        ),
        upsert_emails=_UPSERT.format(
            key="email", filter="phone IS NULL", columns="email", values="s.email", email="", metadata=values
        ),
    )


@dataclass
class BatchResult:
    """What one batch did: counts, and the rows refused because their email is someone else's."""

    created: int = 0
    updated: int = 0
    all_new: bool = False
    clashes: list[tuple[int, str, str | None]] = field(default_factory=list)  # (line, email, other phone)


async def account_exists(conn: Connection, account_id: str) -> bool:
    """Whether the account exists."""
    return bool(await conn.fetchval(_ACCOUNT_EXISTS, account_id))


async def group_exists(conn: Connection, account_id: str, group_id: str) -> bool:
    """Whether the group is the account's."""
    return bool(await conn.fetchval(_GROUP_EXISTS, account_id, group_id))


async def begin(conn: Connection, sql: Statements) -> datetime:
    """Create the session's staging table; the import's start (for telling updates from repeats)."""
    await conn.execute(_DROP_STAGE)
    await conn.execute(sql.create_stage)
    started: datetime = await conn.fetchval(_NOW)
    return started


async def end(conn: Connection) -> None:
    """Drop the staging table."""
    await conn.execute(_DROP_STAGE)


def id_base() -> int:
    """A random base for one import's contact ids (62 bits: base + line stays a positive bigint)."""
    return secrets.randbits(62)


async def upsert_batch(
    conn: Connection,
    sql: Statements,
    batch: bytes,
    *,
    account_id: str,
    metadata_keys: Sequence[str],
    group_id: str | None,
    started: datetime,
    ids_from: int,
    all_new: bool = False,
) -> BatchResult:
    """Upsert a batch of staged rows (CSV text, one row per line) in one transaction: by phone,
    else by email (the last row of a phone wins).

    With `all_new`, the batch is first tried as a plain insert (`result.all_new` says whether
    that held); a batch with any existing contact is then upserted.
    """
    result = BatchResult()
    args = (account_id, list(metadata_keys), group_id, started, ids_from)
    async with conn.transaction():
        await conn.copy_to_table("contact_import_rows", source=io.BytesIO(batch), columns=sql.columns, format="csv")
        if all_new:
            try:
                async with conn.transaction():  # a savepoint: a failed insert leaves nothing behind
                    status = await conn.execute(sql.insert_new, account_id, list(metadata_keys), ids_from)
                    if group_id is not None:
                        await conn.execute(_GROUP_NEW, group_id, ids_from)
            except asyncpg.UniqueViolationError:
                pass
            else:
                result.all_new, result.created = True, int(status.rsplit(" ", 1)[1])
                return result
        for attempt in range(ATTEMPTS):
            try:
                async with conn.transaction():  # a savepoint: a failed attempt leaves nothing behind
                    # Optimistic first: most batches clash with no one. A unique violation on
                    # email (or a deadlock with a concurrent writer) sends us round again.
                    clashes = await _settle_emails(conn, account_id) if attempt else []
                    # Each ends in an aggregate (the counts): always one row.
                    by_phone = cast(asyncpg.Record, await conn.fetchrow(sql.upsert_phones, *args))
                    by_email = cast(asyncpg.Record, await conn.fetchrow(sql.upsert_emails, *args))
                break
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                if attempt == ATTEMPTS - 1:
                    raise
    result.clashes = clashes
    result.created = by_phone["created"] + by_email["created"]
    result.updated = by_phone["updated"] + by_email["updated"]
    return result


async def _settle_emails(conn: Connection, account_id: str) -> list[tuple[int, str, str | None]]:
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
