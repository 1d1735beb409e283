"""Contact groups: create, rename, delete; members added and removed by id, phone or email
(unknown ones are reported, the rest applied)."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from services.api.contact_schemas import GroupIn, MembersIn
from shared.db import campaigns
from shared.db import contacts as db
from shared.db.connection import Executor
from shared.domain import contacts as rules
from shared.errors import Conflict, Invalid, NotFound

log = structlog.get_logger()


def _not_found(group_id: str) -> NotFound:
    return NotFound(f"contact group {group_id!r} not found")


async def get(pool: Executor, account_id: str, group_id: str) -> asyncpg.Record:
    """One of the account's groups with its `member_count`; NotFound otherwise."""
    row = await db.get_group(pool, account_id, group_id)
    if row is None:
        raise _not_found(group_id)
    return row


async def create(pool: Executor, account_id: str, body: GroupIn) -> asyncpg.Record:
    """A new, empty group."""
    row = await db.insert_group(pool, account_id, body.name.strip() or body.name)
    log.info("group.created", group_id=row["id"])
    return row


async def rename(pool: Executor, account_id: str, group_id: str, body: GroupIn) -> asyncpg.Record:
    """Rename a group."""
    row = await db.rename_group(pool, account_id, group_id, body.name.strip() or body.name)
    if row is None:
        raise _not_found(group_id)
    return row


async def delete(pool: asyncpg.Pool, account_id: str, group_id: str) -> None:
    """Delete a group (its contacts stay); Conflict while an unfinished campaign sends to it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await db.lock_group(conn, account_id, group_id):
            raise _not_found(group_id)
        using = await db.campaigns_using_group(conn, account_id, group_id)
        if using:
            raise Conflict(
                f"the group is used by unfinished campaigns ({', '.join(using)}); cancel or finish them first",
                details=[{"field": "id", "reason": f"used by campaign {c}"} for c in using],
            )
        await db.delete_group(conn, account_id, group_id)
    log.info("group.deleted", group_id=group_id)


def _normalise(body: MembersIn) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
    """(phone as sent → E.164, email as sent → normalised, problems) for a membership request."""
    invalid: list[dict[str, str]] = []
    region = None
    if body.country is not None:
        try:
            region = rules.region(body.country)
        except ValueError as exc:
            raise Invalid("bad country", details=[{"field": "country", "reason": str(exc)}]) from None
    phones: dict[str, str] = {}
    for index, raw in enumerate(body.phones):
        try:
            phones[raw] = rules.e164(raw.strip(), region)
        except ValueError as exc:
            invalid.append({"field": f"phones[{index}]", "reason": str(exc)})
    emails: dict[str, str] = {}
    for index, raw in enumerate(body.emails):
        try:
            emails[raw] = rules.email(raw)
        except ValueError as exc:
            invalid.append({"field": f"emails[{index}]", "reason": str(exc)})
    return phones, emails, invalid


async def change_members(
    pool: asyncpg.Pool, account_id: str, group_id: str, body: MembersIn, *, adding: bool
) -> dict[str, Any]:
    """Add (or remove) the contacts named by id, phone or email: what changed, what was not found
    and what was not valid, and the group's `member_count`."""
    if not (body.contact_ids or body.phones or body.emails):
        raise Invalid(
            "name some contacts", details=[{"field": "contact_ids", "reason": "give contact_ids, phones or emails"}]
        )
    phones, emails, invalid = _normalise(body)
    async with pool.acquire() as conn, conn.transaction():
        if not await db.lock_group(conn, account_id, group_id):
            raise _not_found(group_id)
        found = await db.resolve(conn, account_id, body.contact_ids, list(phones.values()), list(emails.values()))
        ids = {r["id"] for r in found}
        by_phone = {r["phone"] for r in found if r["phone"]}
        by_email = {r["email"] for r in found if r["email"]}
        change = db.add_members if adding else db.remove_members
        changed = await change(conn, group_id, sorted(ids))
        count = await db.count_members(conn, group_id)
        if changed:
            await campaigns.recount_drafts(conn, account_id, group_id)
    not_found = {
        "contact_ids": [i for i in body.contact_ids if i not in ids],
        "phones": [raw for raw, e164 in phones.items() if e164 not in by_phone],
        "emails": [raw for raw, email in emails.items() if email not in by_email],
    }
    log.info("group.members_added" if adding else "group.members_removed", group_id=group_id, changed=changed)
    return {
        "group_id": group_id,
        "matched": len(ids),
        "added" if adding else "removed": changed,
        "not_found": not_found,
        "invalid": invalid,
        "member_count": count,
    }
