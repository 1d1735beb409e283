"""`/contact-groups`: create, list, get, rename, delete; members added and removed by id,
phone or email (unknown ones are reported, the rest applied)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from services.api.contact_schemas import GroupIn, MembersIn
from services.api.handlers.common import decode_cursor, encode_cursor, iso, page_limit, read_model
from services.api.handlers.contacts import list_contacts
from shared.db import contacts as db
from shared.domain import contacts as rules
from shared.errors import Conflict, Invalid, NotFound
from shared.row import Row
from shared.web import json_response

log = structlog.get_logger()


def group_body(row: Row) -> dict[str, Any]:
    """A group as the API shows it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "member_count": row["member_count"],
        "created_at": iso(row["created_at"]),
    }


def _not_found(group_id: str) -> NotFound:
    return NotFound(f"contact group {group_id!r} not found")


async def create_group(request: web.Request) -> web.Response:
    """`POST /contact-groups` {"name"} → 201."""
    body = await read_model(request, GroupIn)
    row = await db.insert_group(request.app["pool"], request["account"]["id"], body.name.strip() or body.name)
    log.info("group.created", group_id=row["id"])
    return json_response(group_body(row), status=201)


async def list_groups(request: web.Request) -> web.Response:
    """`GET /contact-groups?limit=&cursor=`, newest first."""
    limit = page_limit(request)
    rows = await db.list_groups(
        request.app["pool"], request["account"]["id"], after=decode_cursor(request), limit=limit + 1
    )
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return json_response(
        {
            "data": [group_body(r) for r in page],
            "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
        }
    )


async def get_group(request: web.Request) -> web.Response:
    """`GET /contact-groups/{id}`."""
    row = await db.get_group(request.app["pool"], request["account"]["id"], request.match_info["id"])
    if row is None:
        raise _not_found(request.match_info["id"])
    return json_response(group_body(row))


async def rename_group(request: web.Request) -> web.Response:
    """`PATCH /contact-groups/{id}` {"name"}."""
    body = await read_model(request, GroupIn)
    row = await db.rename_group(
        request.app["pool"], request["account"]["id"], request.match_info["id"], body.name.strip() or body.name
    )
    if row is None:
        raise _not_found(request.match_info["id"])
    return json_response(group_body(row))


async def delete_group(request: web.Request) -> web.Response:
    """`DELETE /contact-groups/{id}` → 204 (its contacts stay); 409 while an unfinished campaign sends to it."""
    account_id, group_id = request["account"]["id"], request.match_info["id"]
    async with request.app["pool"].acquire() as conn, conn.transaction():
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
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    """`GET /contact-groups/{id}/members?limit=&cursor=&opted_out=`: the group's contacts."""
    return await list_contacts(request, group_id=request.match_info["id"])


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


async def _change_members(request: web.Request, adding: bool) -> web.Response:
    account_id, group_id = request["account"]["id"], request.match_info["id"]
    body = await read_model(request, MembersIn)
    if not (body.contact_ids or body.phones or body.emails):
        raise Invalid(
            "name some contacts", details=[{"field": "contact_ids", "reason": "give contact_ids, phones or emails"}]
        )
    phones, emails, invalid = _normalise(body)
    async with request.app["pool"].acquire() as conn, conn.transaction():
        if not await db.lock_group(conn, account_id, group_id):
            raise _not_found(group_id)
        found = await db.resolve(conn, account_id, body.contact_ids, list(phones.values()), list(emails.values()))
        ids = {r["id"] for r in found}
        by_phone = {r["phone"] for r in found if r["phone"]}
        by_email = {r["email"] for r in found if r["email"]}
        change = db.add_members if adding else db.remove_members
        changed = await change(conn, group_id, sorted(ids))
        count = await db.count_members(conn, group_id)
    not_found = {
        "contact_ids": [i for i in body.contact_ids if i not in ids],
        "phones": [raw for raw, e164 in phones.items() if e164 not in by_phone],
        "emails": [raw for raw, email in emails.items() if email not in by_email],
    }
    log.info("group.members_added" if adding else "group.members_removed", group_id=group_id, changed=changed)
    return json_response(
        {
            "group_id": group_id,
            "matched": len(ids),
            "added" if adding else "removed": changed,
            "not_found": not_found,
            "invalid": invalid,
            "member_count": count,
        }
    )


async def add_members(request: web.Request) -> web.Response:
    """`POST /contact-groups/{id}/members` {"contact_ids", "phones", "emails"} → 200 with what was
    added and what was not found (or not valid)."""
    return await _change_members(request, adding=True)


async def remove_members(request: web.Request) -> web.Response:
    """`DELETE /contact-groups/{id}/members` with the same body → 200 with what was removed."""
    return await _change_members(request, adding=False)
