"""Contacts and contact groups; every query scoped to the caller's account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg

from shared.db.connection import Connection, Executor
from shared.ids import new_id

_GET = "SELECT * FROM contacts WHERE account_id = $1 AND id = $2"
_GET_FOR_UPDATE = _GET + " FOR UPDATE"
# The filters of a list of the account's contacts: `$2` a group, `$3` a channel they opted out of.
_FILTERS = """c.account_id = $1
  AND ($2::text IS NULL
       OR EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = $2 AND m.contact_id = c.id))
  AND ($3::text IS NULL OR ($3 = 'sms' AND c.opted_out_sms) OR ($3 = 'email' AND c.opted_out_email)
       OR ($3 = 'voice' AND c.opted_out_voice))"""
_LIST = f"""
SELECT c.* FROM contacts c
WHERE {_FILTERS}
  AND ($4::text IS NULL OR c.phone = $4)
  AND ($5::text IS NULL OR c.email = $5)
  AND ($6::timestamptz IS NULL OR (c.created_at, c.id) < ($6, $7))
ORDER BY c.created_at DESC, c.id DESC
LIMIT $8
"""  # noqa: S608 (fixed text)
# The metadata keys of the contacts a list with the same filters gives, in order (an export's columns).
_METADATA_KEYS = f"""
SELECT DISTINCT k.key FROM contacts c CROSS JOIN LATERAL jsonb_object_keys(
    CASE WHEN jsonb_typeof(c.metadata) = 'object' THEN c.metadata ELSE '{{}}'::jsonb END) AS k(key)
WHERE {_FILTERS}
ORDER BY k.key
LIMIT $4
"""  # noqa: S608 (fixed text)
# An export's contacts: those the list gives with the same filters, all of them, in its order.
_EXPORT = f"""
SELECT c.* FROM contacts c
WHERE {_FILTERS}
ORDER BY c.created_at DESC, c.id DESC
"""  # noqa: S608 (fixed text)
# Words the dashboard's search looks for, anywhere in a contact's name, company, phone or email.
_SEARCH = """
SELECT c.* FROM contacts c
WHERE c.account_id = $1
  AND ($2::text IS NULL
       OR EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = $2 AND m.contact_id = c.id))
  AND concat_ws(' ', c.first_name, c.last_name, c.company, c.phone, c.email) ILIKE $3
  AND ($4::timestamptz IS NULL OR (c.created_at, c.id) < ($4, $5))
ORDER BY c.created_at DESC, c.id DESC
LIMIT $6
"""
# A contact known only by email gains the phone it is now given (unless that phone is taken).
_ATTACH_PHONE = """
UPDATE contacts SET phone = $2
WHERE account_id = $1 AND email = $3 AND phone IS NULL
  AND NOT EXISTS (SELECT 1 FROM contacts p WHERE p.account_id = $1 AND p.phone = $2)
"""
_OWNER_OF_PHONE = "SELECT id FROM contacts WHERE account_id = $1 AND phone = $2"
_OWNER_OF_EMAIL = "SELECT id, phone FROM contacts WHERE account_id = $1 AND email = $2"
_UPSERT_BY_PHONE = """
INSERT INTO contacts AS c (id, account_id, phone, email, first_name, last_name, company, timezone,
                           metadata, opted_out_sms, opted_out_email, opted_out_voice)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
        COALESCE($10::boolean, false), COALESCE($11::boolean, false), COALESCE($12::boolean, false))
ON CONFLICT (account_id, phone) DO UPDATE SET
    email = COALESCE(EXCLUDED.email, c.email),
    first_name = COALESCE(EXCLUDED.first_name, c.first_name),
    last_name = COALESCE(EXCLUDED.last_name, c.last_name),
    company = COALESCE(EXCLUDED.company, c.company),
    timezone = COALESCE(EXCLUDED.timezone, c.timezone),
    metadata = c.metadata || EXCLUDED.metadata,
    opted_out_sms = COALESCE($10::boolean, c.opted_out_sms),
    opted_out_email = COALESCE($11::boolean, c.opted_out_email),
    opted_out_voice = COALESCE($12::boolean, c.opted_out_voice),
    updated_at = now()
RETURNING *, (xmax = 0) AS inserted
"""
_UPSERT_BY_EMAIL = _UPSERT_BY_PHONE.replace(
    "ON CONFLICT (account_id, phone)", "ON CONFLICT (account_id, email)"
).replace("    email = COALESCE(EXCLUDED.email, c.email),\n", "")
_UPDATE = """
UPDATE contacts SET first_name = $3, last_name = $4, email = $5, phone = $6, company = $7,
    timezone = $8, metadata = $9, opted_out_sms = $10, opted_out_email = $11,
    opted_out_voice = $12, updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING *
"""
_DELETE = "DELETE FROM contacts WHERE account_id = $1 AND id = $2 RETURNING id"
# A deleted contact's deliveries not yet handed to a provider would wait forever: cancel them.
_CANCEL_PENDING = """
UPDATE deliveries SET state = 'cancelled', error = 'contact deleted', updated_at = now()
WHERE account_id = $1 AND contact_id = $2 AND state IN ('planned', 'queued')
"""

_INSERT_GROUP = """
INSERT INTO contact_groups (id, account_id, name) VALUES ($1, $2, $3) RETURNING *, 0::bigint AS member_count
"""
_GET_GROUP = """
SELECT g.*, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count
FROM contact_groups g WHERE g.account_id = $1 AND g.id = $2
"""
_LOCK_GROUP = "SELECT id FROM contact_groups WHERE account_id = $1 AND id = $2 FOR UPDATE"
_LIST_GROUPS = """
SELECT g.*, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count
FROM contact_groups g
WHERE g.account_id = $1 AND ($2::timestamptz IS NULL OR (g.created_at, g.id) < ($2, $3))
ORDER BY g.created_at DESC, g.id DESC
LIMIT $4
"""
_RENAME_GROUP = """
UPDATE contact_groups g SET name = $3 WHERE g.account_id = $1 AND g.id = $2
RETURNING g.*, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count
"""
_GROUP_IN_USE = """
SELECT id FROM campaigns
WHERE account_id = $1 AND $2 = ANY(group_ids) AND status NOT IN ('completed', 'cancelled', 'failed')
ORDER BY created_at LIMIT 10
"""
_DELETE_GROUP = "DELETE FROM contact_groups WHERE account_id = $1 AND id = $2 RETURNING id"
_RESOLVE = """
SELECT id, phone, email FROM contacts
WHERE account_id = $1 AND (id = ANY($2::text[]) OR phone = ANY($3::text[]) OR email = ANY($4::text[]))
"""
_ADD_MEMBERS = """
WITH added AS (
    INSERT INTO group_members (group_id, contact_id) SELECT $1, unnest($2::text[])
    ON CONFLICT DO NOTHING RETURNING 1
) SELECT count(*) FROM added
"""
_REMOVE_MEMBERS = """
WITH removed AS (
    DELETE FROM group_members WHERE group_id = $1 AND contact_id = ANY($2::text[]) RETURNING 1
) SELECT count(*) FROM removed
"""
_COUNT_MEMBERS = "SELECT count(*) FROM group_members WHERE group_id = $1"

#: Column order of `_UPSERT_*` after the id and account: the built-in fields, metadata, opt-outs.
_UPSERT_FIELDS = ("phone", "email", "first_name", "last_name", "company", "timezone")


async def get(conn: Executor, account_id: str, contact_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """One of the account's contacts (row-locked inside a transaction when `lock`)."""
    return await conn.fetchrow(_GET_FOR_UPDATE if lock else _GET, account_id, contact_id)


async def list_page(
    conn: Executor,
    account_id: str,
    *,
    group_id: str | None = None,
    opted_out: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the account's contacts, newest first, after the cursor `(created_at, id)`."""
    created, last_id = after if after else (None, None)
    return await conn.fetch(_LIST, account_id, group_id, opted_out, phone, email, created, last_id, limit)


async def metadata_keys(
    conn: Executor, account_id: str, *, group_id: str | None, opted_out: str | None, limit: int
) -> list[str]:
    """The first `limit` metadata keys, in order, of the contacts `list_page` gives with these filters."""
    return [r["key"] for r in await conn.fetch(_METADATA_KEYS, account_id, group_id, opted_out, limit)]


async def export_rows(
    conn: Connection, account_id: str, *, group_id: str | None, opted_out: str | None, batch: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every contact `list_page` gives with these filters, in its order, `batch` at a time, through
    one cursor (inside a transaction): one pass, where pages of a list would each read an import's
    whole tie group again (an import's rows share one created_at)."""
    cursor = await conn.cursor(_EXPORT, account_id, group_id, opted_out)
    while rows := await cursor.fetch(batch):
        yield rows


async def search_page(
    conn: Executor,
    account_id: str,
    text: str,
    *,
    group_id: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the account's contacts whose name, company, phone or email holds `text`."""
    created, last_id = after if after else (None, None)
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return await conn.fetch(_SEARCH, account_id, group_id, pattern, created, last_id, limit)


async def email_clash(
    conn: Connection,
    account_id: str,
    email: str | None,
    *,
    phone: str | None = None,
    contact_id: str | None = None,
) -> asyncpg.Record | None:
    """Another contact that already has `email`: for an update of `contact_id`, or for an upsert
    by `phone` (where a contact known by that email alone would just gain the phone)."""
    if email is None:
        return None
    owner = await conn.fetchrow(_OWNER_OF_EMAIL, account_id, email)
    if owner is None:
        return None
    if contact_id is not None:
        return None if owner["id"] == contact_id else owner
    if phone is None:
        return None  # an upsert by email updates its owner
    phone_owner = await conn.fetchval(_OWNER_OF_PHONE, account_id, phone)
    if phone_owner is None:
        return None if owner["phone"] is None else owner
    return None if phone_owner == owner["id"] else owner


async def upsert(
    conn: Connection,
    account_id: str,
    fields: Mapping[str, Any],
    metadata: dict[str, Any],
    opted_out: Mapping[str, bool | None],
) -> asyncpg.Record:
    """Create the contact, or update the one with its phone (else email); `inserted` says which.

    Call inside a transaction, after `email_clash` found nothing.
    """
    if fields.get("phone") and fields.get("email"):
        await conn.execute(_ATTACH_PHONE, account_id, fields["phone"], fields["email"])
    sql = _UPSERT_BY_PHONE if fields.get("phone") else _UPSERT_BY_EMAIL
    row = await conn.fetchrow(
        sql,
        new_id("contact"),
        account_id,
        *(fields.get(name) for name in _UPSERT_FIELDS),
        metadata,
        opted_out.get("sms"),
        opted_out.get("email"),
        opted_out.get("voice"),
    )
    return cast(asyncpg.Record, row)  # an upsert (ON CONFLICT DO UPDATE) RETURNING: always a row


async def update(
    conn: Connection, account_id: str, contact_id: str, values: Mapping[str, Any]
) -> asyncpg.Record | None:
    """Overwrite a contact's fields, metadata and opt-outs with `values`."""
    return await conn.fetchrow(
        _UPDATE,
        account_id,
        contact_id,
        values["first_name"],
        values["last_name"],
        values["email"],
        values["phone"],
        values["company"],
        values["timezone"],
        values["metadata"],
        values["opted_out_sms"],
        values["opted_out_email"],
        values["opted_out_voice"],
    )


async def delete(conn: Connection, account_id: str, contact_id: str) -> bool:
    """Delete a contact (and its memberships); its unsent deliveries are cancelled. False if unknown."""
    if await conn.fetchval(_DELETE, account_id, contact_id) is None:
        return False
    await conn.execute(_CANCEL_PENDING, account_id, contact_id)
    return True


async def insert_group(conn: Executor, account_id: str, name: str) -> asyncpg.Record:
    """A new, empty group."""
    row = await conn.fetchrow(_INSERT_GROUP, new_id("group"), account_id, name)
    return cast(asyncpg.Record, row)  # INSERT … RETURNING: always a row


async def get_group(conn: Executor, account_id: str, group_id: str) -> asyncpg.Record | None:
    """One of the account's groups with its `member_count`."""
    return await conn.fetchrow(_GET_GROUP, account_id, group_id)


async def lock_group(conn: Connection, account_id: str, group_id: str) -> bool:
    """Lock one of the account's groups for a membership change; False if it is not theirs."""
    return await conn.fetchval(_LOCK_GROUP, account_id, group_id) is not None


async def list_groups(
    conn: Executor, account_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """A page of the account's groups, newest first."""
    created, last_id = after if after else (None, None)
    return await conn.fetch(_LIST_GROUPS, account_id, created, last_id, limit)


async def rename_group(conn: Executor, account_id: str, group_id: str, name: str) -> asyncpg.Record | None:
    """Rename a group; None if it is not the account's."""
    return await conn.fetchrow(_RENAME_GROUP, account_id, group_id, name)


async def campaigns_using_group(conn: Executor, account_id: str, group_id: str) -> list[str]:
    """Ids of the account's unfinished campaigns that send to the group (at most ten)."""
    return [r["id"] for r in await conn.fetch(_GROUP_IN_USE, account_id, group_id)]


async def delete_group(conn: Executor, account_id: str, group_id: str) -> bool:
    """Delete a group (its contacts stay); False if it is not the account's."""
    return await conn.fetchval(_DELETE_GROUP, account_id, group_id) is not None


async def resolve(
    conn: Executor, account_id: str, ids: Sequence[str], phones: Sequence[str], emails: Sequence[str]
) -> list[asyncpg.Record]:
    """The account's contacts matching any of the ids, phones or emails."""
    return await conn.fetch(_RESOLVE, account_id, list(ids), list(phones), list(emails))


async def add_members(conn: Connection, group_id: str, contact_ids: Sequence[str]) -> int:
    """Add contacts (already checked to be the group's account's) to a group; how many were new."""
    return int(await conn.fetchval(_ADD_MEMBERS, group_id, list(contact_ids)))


async def remove_members(conn: Connection, group_id: str, contact_ids: Sequence[str]) -> int:
    """Remove contacts from a group; how many were members."""
    return int(await conn.fetchval(_REMOVE_MEMBERS, group_id, list(contact_ids)))


async def count_members(conn: Executor, group_id: str) -> int:
    """How many contacts a group has."""
    return int(await conn.fetchval(_COUNT_MEMBERS, group_id))
