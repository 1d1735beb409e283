"""`/agents`: the AI agents that answer a campaign's contacts."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.api.handlers.common import iso, read_model
from services.api.schemas import AgentCreate
from shared.db import campaigns as db
from shared.errors import NotFound
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
    async with request.app["pool"].acquire() as conn:
        row = await db.insert_agent(conn, request["account"]["id"], body.model_dump())
    return json_response(agent_body(row), status=201)


async def get_agent(request: web.Request) -> web.Response:
    """`GET /agents/{id}`."""
    row = await db.get_agent(request.app["pool"], request["account"]["id"], request.match_info["id"])
    if row is None:
        raise NotFound(f"agent {request.match_info['id']!r} not found")
    return json_response(agent_body(row))
