"""`/agents`: the AI agents that answer a campaign's contacts."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.api.handlers.common import decode_cursor, encode_cursor, iso, page_limit, read_model
from services.api.schemas import AgentCreate, AgentPatch, agent_settings_errors, template_errors
from shared.db import campaigns as db
from shared.errors import Conflict, Invalid, NotFound
from shared.web import json_response

#: Settings never echoed back (credentials of an LLM or webhook).
_SECRET_SETTINGS = ("api_key", "secret", "token")


def agent_body(row: asyncpg.Record) -> dict[str, Any]:
    """An agent as the API shows it (secrets withheld)."""
    settings = {k: ("[set]" if k in _SECRET_SETTINGS else v) for k, v in (row["settings"] or {}).items()}
    return {
        "id": row["id"],
        "name": row["name"],
        "instructions": row["instructions"],
        "opening_message": row["opening_message"],
        "voice": row["voice"],
        "mode": row["mode"],
        "settings": settings,
        "created_at": iso(row["created_at"]),
    }


async def create_agent(request: web.Request) -> web.Response:
    """`POST /agents` → 201 with the agent."""
    body = await read_model(request, AgentCreate)
    errors = agent_settings_errors(body.mode, body.settings) + template_errors("opening_message", body.opening_message)
    if errors:
        raise Invalid("the agent is not valid", details=errors)
    async with request.app["pool"].acquire() as conn:
        row = await db.insert_agent(conn, request["account"]["id"], body.model_dump())
    return json_response(agent_body(row), status=201)


async def get_agent(request: web.Request) -> web.Response:
    """`GET /agents/{id}`."""
    row = await db.get_agent(request.app["pool"], request["account"]["id"], request.match_info["id"])
    if row is None:
        raise NotFound(f"agent {request.match_info['id']!r} not found")
    return json_response(agent_body(row))


async def list_agents(request: web.Request) -> web.Response:
    """`GET /agents?limit=&cursor=`, newest first."""
    limit = page_limit(request)
    rows = await db.agents_page(request.app["pool"], request["account"]["id"], decode_cursor(request), limit + 1)
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return json_response(
        {
            "data": [agent_body(r) for r in page],
            "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
        }
    )


async def update_agent(request: web.Request) -> web.Response:
    """`PATCH /agents/{id}`: change any field; mode and settings are checked together."""
    account_id = request["account"]["id"]
    row = await db.get_agent(request.app["pool"], account_id, request.match_info["id"])
    if row is None:
        raise NotFound(f"agent {request.match_info['id']!r} not found")
    patch = await read_model(request, AgentPatch)
    data = {k: row[k] for k in ("name", "instructions", "opening_message", "voice", "mode", "settings")}
    data.update({k: getattr(patch, k) for k in patch.model_fields_set if getattr(patch, k) is not None})
    errors = agent_settings_errors(data["mode"], data["settings"]) + template_errors(
        "opening_message", data["opening_message"]
    )
    if errors:
        raise Invalid("the agent is not valid", details=errors)
    updated = await db.update_agent(request.app["pool"], account_id, row["id"], data)
    return json_response(agent_body(updated))


async def delete_agent(request: web.Request) -> web.Response:
    """`DELETE /agents/{id}` → 204; 409 while a campaign uses it."""
    account_id = request["account"]["id"]
    try:
        deleted = await db.delete_agent(request.app["pool"], account_id, request.match_info["id"])
    except asyncpg.ForeignKeyViolationError as exc:
        raise Conflict("campaigns use this agent; delete or change them first") from exc
    if not deleted:
        raise NotFound(f"agent {request.match_info['id']!r} not found")
    return web.Response(status=204)
