"""Agents: the AI agents that answer a campaign's contacts."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from services.api.schemas import (
    AgentCreate,
    AgentPatch,
    agent_settings_errors,
    reply_template_errors,
    template_errors,
)
from shared.db import campaigns as db
from shared.db.connection import Executor
from shared.errors import Conflict, Invalid, NotFound
from shared.outbound import OutboundPolicy, OutboundRefused

#: The fields of an agent a create or a change sets.
FIELDS = ("name", "instructions", "opening_message", "voice", "mode", "settings")


async def get(pool: Executor, account_id: str, agent_id: str) -> asyncpg.Record:
    """One of the account's agents; NotFound otherwise."""
    row = await db.get_agent(pool, account_id, agent_id)
    if row is None:
        raise NotFound(f"agent {agent_id!r} not found")
    return row


async def create(pool: asyncpg.Pool, account_id: str, body: AgentCreate, outbound: OutboundPolicy) -> asyncpg.Record:
    """A new agent; 422 naming what its answering mode lacks, a URL `outbound` does not reach, or
    its opening message's or a rule's reply's template error."""
    errors = agent_settings_errors(body.mode, body.settings) + await url_errors(outbound, body.mode, body.settings)
    errors += await asyncio.to_thread(template_errors, "opening_message", body.opening_message)
    errors += await asyncio.to_thread(reply_template_errors, body.mode, body.settings)
    if errors:
        raise Invalid("the agent is not valid", details=errors)
    async with pool.acquire() as conn:
        return await db.insert_agent(conn, account_id, body.model_dump())


async def update(
    pool: Executor, account_id: str, agent_id: str, patch: AgentPatch, outbound: OutboundPolicy
) -> asyncpg.Record:
    """Change any field; mode and settings are checked together (as a create checks them)."""
    row = await get(pool, account_id, agent_id)
    data = {k: row[k] for k in FIELDS}
    data.update({k: getattr(patch, k) for k in patch.model_fields_set if getattr(patch, k) is not None})
    errors = agent_settings_errors(data["mode"], data["settings"])
    errors += await url_errors(outbound, data["mode"], data["settings"])
    errors += await asyncio.to_thread(template_errors, "opening_message", data["opening_message"])
    errors += await asyncio.to_thread(reply_template_errors, data["mode"], data["settings"])
    if errors:
        raise Invalid("the agent is not valid", details=errors)
    return await db.update_agent(pool, account_id, row["id"], data)


async def url_errors(outbound: OutboundPolicy, mode: str, settings: dict[str, Any]) -> list[dict[str, str]]:
    """The agent's webhook or LLM URL, when its host resolves to an address `outbound` does not
    reach (private, loopback, link-local, metadata…; `shared/outbound.py`)."""
    key = {"webhook": "url", "llm": "base_url"}.get(mode)
    url = settings.get(key) if key else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return []  # missing or not http(s): agent_settings_errors says so
    try:
        await outbound.check_url(url)
    except OutboundRefused as exc:
        return [{"field": f"settings.{key}", "reason": f"not reachable from here: {exc}"}]
    return []


async def delete(pool: Executor, account_id: str, agent_id: str) -> None:
    """Delete an agent; NotFound, or Conflict while a campaign uses it."""
    try:
        deleted = await db.delete_agent(pool, account_id, agent_id)
    except asyncpg.ForeignKeyViolationError as exc:
        raise Conflict("campaigns use this agent; delete or change them first") from exc
    if not deleted:
        raise NotFound(f"agent {agent_id!r} not found")
