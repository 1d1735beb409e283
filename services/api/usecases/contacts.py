"""Contacts: create (an upsert on phone, else email), change, delete."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import structlog

from services.api.contact_schemas import ContactBody
from shared.db import campaigns
from shared.db import contacts as db
from shared.domain import contacts as rules
from shared.errors import Conflict, Invalid, NotFound

log = structlog.get_logger()

_NEEDS_ONE = {"field": "phone", "reason": "a contact needs a phone or an email"}


def _given(body: ContactBody) -> dict[str, Any]:
    return {name: getattr(body, name) for name in (*rules.FIELDS, "country") if name in body.model_fields_set}


def _opt_out_keys(body: ContactBody) -> list[dict[str, str]]:
    """Metadata keys naming an opt-out (`opted_out_sms` beside the fields, `metadata.opted_out`):
    refused, as `opted_out` itself is the field that sets opt-outs."""
    return [
        *rules.opt_out_key_errors("", body.model_extra or {}),
        *rules.opt_out_key_errors("metadata.", body.metadata or {}),
    ]


def _clash(owner: asyncpg.Record) -> Conflict:
    who = f" (phone {owner['phone']})" if owner["phone"] else ""
    return Conflict(
        f"another contact already has this email{who}",
        details=[{"field": "email", "reason": f"belongs to contact {owner['id']}"}],
    )


def _unique_conflict(exc: asyncpg.UniqueViolationError) -> Conflict:
    name = "email" if "email" in (exc.constraint_name or "") else "phone"
    return Conflict(f"another contact already has this {name}", details=[{"field": name, "reason": "already taken"}])


async def create(pool: asyncpg.Pool, account_id: str, body: ContactBody) -> asyncpg.Record:
    """Create the contact, or update the one with its phone (else email): `inserted` says which
    (given fields replace, metadata merges); Conflict when the email is another contact's."""
    fields, errors = rules.check_fields(_given(body), None)
    errors += _opt_out_keys(body)
    if not errors and not rules.reachable(fields):
        errors.append(_NEEDS_ONE)
    if errors:
        raise Invalid("the contact is not valid", details=errors)
    metadata = {k: v for k, v in body.extra_metadata().items() if v is not None}
    opted_out = body.opted_out.model_dump() if body.opted_out else {}
    async with pool.acquire() as conn, conn.transaction():
        owner = await db.email_clash(conn, account_id, fields.get("email"), phone=fields.get("phone"))
        if owner is not None:
            raise _clash(owner)
        try:
            row = await db.upsert(conn, account_id, fields, metadata, opted_out)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_conflict(exc) from exc
    log.info("contact.created" if row["inserted"] else "contact.updated", contact_id=row["id"])
    return row


async def update(pool: asyncpg.Pool, account_id: str, contact_id: str, body: ContactBody) -> asyncpg.Record:
    """Change only the keys sent (null clears a field; in `metadata`, null removes a key);
    `opted_out` may set any channel."""
    fields, errors = rules.check_fields(_given(body), None)
    errors += _opt_out_keys(body)
    async with pool.acquire() as conn, conn.transaction():
        row = await db.get(conn, account_id, contact_id, lock=True)
        if row is None:
            raise NotFound(f"contact {contact_id!r} not found")
        values: dict[str, Any] = {name: row[name] for name in rules.FIELDS} | fields
        if not errors and not rules.reachable(values):
            errors.append(_NEEDS_ONE)
        if errors:
            raise Invalid("the contact is not valid", details=errors)
        current = {} if "metadata" in body.model_fields_set and body.metadata is None else row["metadata"]
        values["metadata"] = rules.merge_metadata(current, body.extra_metadata())
        given = body.opted_out.model_dump() if body.opted_out else {}
        for channel in rules.CHANNELS:
            flag = given.get(channel)
            values[f"opted_out_{channel}"] = row[f"opted_out_{channel}"] if flag is None else flag
        if values["email"] is not None and values["email"] != row["email"]:
            owner = await db.email_clash(conn, account_id, values["email"], contact_id=contact_id)
            if owner is not None:
                raise _clash(owner)
        try:
            updated = await db.update(conn, account_id, contact_id, values)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_conflict(exc) from exc
    log.info("contact.updated", contact_id=contact_id)
    return cast(asyncpg.Record, updated)  # locked by `db.get` above


async def delete(pool: asyncpg.Pool, account_id: str, contact_id: str) -> None:
    """Delete a contact: its group memberships go, its unsent deliveries are cancelled."""
    async with pool.acquire() as conn, conn.transaction():
        if not await db.delete(conn, account_id, contact_id):
            raise NotFound(f"contact {contact_id!r} not found")
        await campaigns.recount_drafts(conn, account_id)  # (the drafts that named it count one fewer)
    log.info("contact.deleted", contact_id=contact_id)
