"""`/contacts`: create (an upsert on phone, else email), read, list, export, update, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.contact_schemas import ContactBody
from services.api.handlers.common import decode_cursor, iso, page_limit, query_address, read_model
from services.api.paging import newest_first
from services.api.usecases import contacts as usecase
from services.api.usecases import exports
from shared.db import contacts as db
from shared.domain import contacts as rules
from shared.errors import Invalid, NotFound
from shared.row import Row
from shared.web import download, json_response


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


async def create_contact(request: web.Request) -> web.Response:
    """`POST /contacts` → 201 when created; 200 when the phone (else email) already existed and
    the contact was updated instead (given fields replace, metadata merges)."""
    body = await read_model(request, ContactBody)
    row = await usecase.create(request.app["pool"], request["account"]["id"], body)
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
    group_id, opted_out = await _group_and_opt_out(request, group_id)
    filters, errors = rules.check_fields(
        {k: query_address(request, k) for k in ("phone", "email", "country") if request.query.get(k)}, None
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
    return json_response(newest_first(rows, limit, contact_body))


async def _group_and_opt_out(request: web.Request, group_id: str | None = None) -> tuple[str | None, str | None]:
    """The `group_id` (of the caller's account: 404 otherwise) and `opted_out` filters."""
    group_id = group_id or request.query.get("group_id") or None
    if group_id is not None and await db.get_group(request.app["pool"], request["account"]["id"], group_id) is None:
        raise NotFound(
            f"contact group {group_id!r} not found", details=[{"field": "group_id", "reason": "no such group"}]
        )
    opted_out = request.query.get("opted_out") or None
    if opted_out is not None and opted_out not in rules.CHANNELS:
        raise Invalid("bad opted_out", details=[{"field": "opted_out", "reason": "one of sms, email, voice"}])
    return group_id, opted_out


async def export_contacts(request: web.Request) -> web.StreamResponse:
    """`GET /contacts.csv?group_id=&opted_out=`: the account's contacts as CSV, streamed, in the
    columns an import reads back (then id, opt-outs and creation time, which an import skips)."""
    group_id, opted_out = await _group_and_opt_out(request)
    rows = exports.contacts_csv(request.app["pool"], request["account"]["id"], group_id=group_id, opted_out=opted_out)
    name = f"contacts{'-' + group_id if group_id else ''}{'-opted-out-' + opted_out if opted_out else ''}.csv"
    return await download(request, rows, content_type="text/csv", filename=name)


async def update_contact(request: web.Request) -> web.Response:
    """`PATCH /contacts/{id}`: only the keys sent change (null clears a field; in `metadata`, null
    removes a key); `opted_out` may set any channel."""
    body = await read_model(request, ContactBody)
    row = await usecase.update(request.app["pool"], request["account"]["id"], request.match_info["id"], body)
    return json_response(contact_body(row))


async def delete_contact(request: web.Request) -> web.Response:
    """`DELETE /contacts/{id}` → 204; its group memberships go, its unsent deliveries are cancelled."""
    await usecase.delete(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return web.Response(status=204)
