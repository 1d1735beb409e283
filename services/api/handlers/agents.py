"""`/agents`: the AI agents that answer a campaign's contacts."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.api.handlers.common import decode_cursor, iso, page_limit, read_model
from services.api.paging import newest_first
from services.api.schemas import AgentCreate, AgentPatch
from services.api.usecases import agents as usecase
from shared.db import campaigns as db
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
    return json_response(
        agent_body(await usecase.create(request.app["pool"], request["account"]["id"], body, request.app["outbound"])),
        status=201,
    )


async def get_agent(request: web.Request) -> web.Response:
    """`GET /agents/{id}`."""
    return json_response(
        agent_body(await usecase.get(request.app["pool"], request["account"]["id"], request.match_info["id"]))
    )


async def list_agents(request: web.Request) -> web.Response:
    """`GET /agents?limit=&cursor=`, newest first."""
    limit = page_limit(request)
    rows = await db.agents_page(request.app["pool"], request["account"]["id"], decode_cursor(request), limit + 1)
    return json_response(newest_first(rows, limit, agent_body))


async def update_agent(request: web.Request) -> web.Response:
    """`PATCH /agents/{id}`: change any field; mode and settings are checked together."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    await usecase.get(pool, account_id, request.match_info["id"])  # 404 before reading the body
    patch = await read_model(request, AgentPatch)
    updated = await usecase.update(pool, account_id, request.match_info["id"], patch, request.app["outbound"])
    return json_response(agent_body(updated))


async def delete_agent(request: web.Request) -> web.Response:
    """`DELETE /agents/{id}` → 204; 409 while a campaign uses it."""
    await usecase.delete(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return web.Response(status=204)
