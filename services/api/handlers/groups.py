"""`/contact-groups`: create, list, get, rename, delete; members added and removed by id,
phone or email (unknown ones are reported, the rest applied)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.contact_schemas import GroupIn, MembersIn
from services.api.handlers.common import decode_cursor, iso, page_limit, read_model
from services.api.handlers.contacts import list_contacts
from services.api.paging import newest_first
from services.api.usecases import groups as usecase
from shared.db import contacts as db
from shared.row import Row
from shared.web import json_response


def group_body(row: Row) -> dict[str, Any]:
    """A group as the API shows it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "member_count": row["member_count"],
        "created_at": iso(row["created_at"]),
    }


async def create_group(request: web.Request) -> web.Response:
    """`POST /contact-groups` {"name"} → 201."""
    body = await read_model(request, GroupIn)
    return json_response(
        group_body(await usecase.create(request.app["pool"], request["account"]["id"], body)), status=201
    )


async def list_groups(request: web.Request) -> web.Response:
    """`GET /contact-groups?limit=&cursor=`, newest first."""
    limit = page_limit(request)
    rows = await db.list_groups(
        request.app["pool"], request["account"]["id"], after=decode_cursor(request), limit=limit + 1
    )
    return json_response(newest_first(rows, limit, group_body))


async def get_group(request: web.Request) -> web.Response:
    """`GET /contact-groups/{id}`."""
    return json_response(
        group_body(await usecase.get(request.app["pool"], request["account"]["id"], request.match_info["id"]))
    )


async def rename_group(request: web.Request) -> web.Response:
    """`PATCH /contact-groups/{id}` {"name"}."""
    body = await read_model(request, GroupIn)
    row = await usecase.rename(request.app["pool"], request["account"]["id"], request.match_info["id"], body)
    return json_response(group_body(row))


async def delete_group(request: web.Request) -> web.Response:
    """`DELETE /contact-groups/{id}` → 204 (its contacts stay); 409 while an unfinished campaign sends to it."""
    await usecase.delete(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    """`GET /contact-groups/{id}/members?limit=&cursor=&opted_out=`: the group's contacts."""
    return await list_contacts(request, group_id=request.match_info["id"])


async def _change_members(request: web.Request, adding: bool) -> web.Response:
    body = await read_model(request, MembersIn)
    answer = await usecase.change_members(
        request.app["pool"], request["account"]["id"], request.match_info["id"], body, adding=adding
    )
    return json_response(answer)


async def add_members(request: web.Request) -> web.Response:
    """`POST /contact-groups/{id}/members` {"contact_ids", "phones", "emails"} → 200 with what was
    added and what was not found (or not valid)."""
    return await _change_members(request, adding=True)


async def remove_members(request: web.Request) -> web.Response:
    """`DELETE /contact-groups/{id}/members` with the same body → 200 with what was removed."""
    return await _change_members(request, adding=False)
