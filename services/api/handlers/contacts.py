"""`/contacts`: create (an upsert on phone, else email), read, list, update, delete."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import structlog
from aiohttp import web

from services.api.contact_schemas import ContactBody
from services.api.handlers.common import decode_cursor, encode_cursor, iso, page_limit, read_model
from shared.db import contacts as db
from shared.domain import contacts as rules
from shared.errors import Conflict, Invalid, NotFound
from shared.row import Row
from shared.web import json_response

log = structlog.get_logger()

_NEEDS_ONE = {"field": "phone", "reason": "a contact needs a phone or an email"}


def contact_body(row: Row) -> dict[str, Any]:
    """A contact as the API shows it."""
    return {
        "id": row["id"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "email": row["email"],
        "phone": row["phone"],
        "company": row["company"],
        "timezone": row["timezone"],
        "metadata": row["metadata"],
        "opted_out": {channel: row[f"opted_out_{channel}"] for channel in rules.CHANNELS},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _given(body: ContactBody) -> dict[str, Any]:
    return {name: getattr(body, name) for name in (*rules.FIELDS, "country") if name in body.model_fields_set}


def _clash(owner: asyncpg.Record) -> Conflict:
    who = f" (phone {owner['phone']})" if owner["phone"] else ""
    return Conflict(
        f"another contact already has this email{who}",
        details=[{"field": "email", "reason": f"belongs to contact {owner['id']}"}],
    )


def _unique_conflict(exc: asyncpg.UniqueViolationError) -> Conflict:
    name = "email" if "email" in (exc.constraint_name or "") else "phone"
    return Conflict(f"another contact already has this {name}", details=[{"field": name, "reason": "already taken"}])


async def create_contact(request: web.Request) -> web.Response:
    """`POST /contacts` → 201 when created; 200 when the phone (else email) already existed and
    the contact was updated instead (given fields replace, metadata merges)."""
    account_id = request["account"]["id"]
    body = await read_model(request, ContactBody)
    fields, errors = rules.check_fields(_given(body), None)
    if not errors and not rules.reachable(fields):
        errors.append(_NEEDS_ONE)
    if errors:
        raise Invalid("the contact is not valid", details=errors)
    metadata = {k: v for k, v in body.extra_metadata().items() if v is not None}
    opted_out = body.opted_out.model_dump() if body.opted_out else {}
    async with request.app["pool"].acquire() as conn, conn.transaction():
        owner = await db.email_clash(conn, account_id, fields.get("email"), phone=fields.get("phone"))
        if owner is not None:
            raise _clash(owner)
        try:
            row = await db.upsert(conn, account_id, fields, metadata, opted_out)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_conflict(exc) from exc
    log.info("contact.created" if row["inserted"] else "contact.updated", contact_id=row["id"])
    return json_response(contact_body(row), status=201 if row["inserted"] else 200)


async def get_contact(request: web.Request) -> web.Response:
    """`GET /contacts/{id}`."""
    row = await db.get(request.app["pool"], request["account"]["id"], request.match_info["id"])
    if row is None:
        raise NotFound(f"contact {request.match_info['id']!r} not found")
    return json_response(contact_body(row))


async def list_contacts(request: web.Request, group_id: str | None = None) -> web.Response:
    """`GET /contacts?limit=&cursor=&group_id=&opted_out=sms|email|voice&phone=&email=`, newest first."""
    limit = page_limit(request)
    account_id = request["account"]["id"]
    pool = request.app["pool"]
    group_id = group_id or request.query.get("group_id") or None
    if group_id is not None and await db.get_group(pool, account_id, group_id) is None:
        raise NotFound(
            f"contact group {group_id!r} not found", details=[{"field": "group_id", "reason": "no such group"}]
        )
    opted_out = request.query.get("opted_out") or None
    if opted_out is not None and opted_out not in rules.CHANNELS:
        raise Invalid("bad opted_out", details=[{"field": "opted_out", "reason": "one of sms, email, voice"}])
    filters, errors = rules.check_fields(
        {k: request.query[k] for k in ("phone", "email", "country") if request.query.get(k)}, None
    )
    if errors:
        raise Invalid("bad filter", details=errors)
    rows = await db.list_page(
        pool,
        account_id,
        group_id=group_id,
        opted_out=opted_out,
        phone=filters.get("phone"),
        email=filters.get("email"),
        after=decode_cursor(request),
        limit=limit + 1,
    )
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return json_response(
        {
            "data": [contact_body(r) for r in page],
            "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
        }
    )


async def update_contact(request: web.Request) -> web.Response:
    """`PATCH /contacts/{id}`: only the keys sent change (null clears a field; in `metadata`, null
    removes a key); `opted_out` may set any channel."""
    account_id, contact_id = request["account"]["id"], request.match_info["id"]
    body = await read_model(request, ContactBody)
    fields, errors = rules.check_fields(_given(body), None)
    async with request.app["pool"].acquire() as conn, conn.transaction():
        row = await db.get(conn, account_id, contact_id, lock=True)
        if row is None:
            raise NotFound(f"contact {contact_id!r} not found")
        values = {name: row[name] for name in rules.FIELDS} | fields
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
    return json_response(contact_body(cast(asyncpg.Record, updated)))  # locked by `db.get` above


async def delete_contact(request: web.Request) -> web.Response:
    """`DELETE /contacts/{id}` → 204; its group memberships go, its unsent deliveries are cancelled."""
    account_id, contact_id = request["account"]["id"], request.match_info["id"]
    async with request.app["pool"].acquire() as conn, conn.transaction():
        if not await db.delete(conn, account_id, contact_id):
            raise NotFound(f"contact {contact_id!r} not found")
    log.info("contact.deleted", contact_id=contact_id)
    return web.Response(status=204)
