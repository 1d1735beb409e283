"""The webhook agent: POST the conversation to the user's URL, use its `reply`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from services.tracker.agents.conversation import Conversation
from shared import outbound
from shared.row import Row


async def answer(
    session: aiohttp.ClientSession,
    settings: Mapping[str, Any],
    agent: Row,
    contact: Mapping[str, Any],
    conversation: Conversation,
) -> str | None:
    """`{"reply": "..."}` from `settings["url"]` (a `secret` is sent as a Bearer token), through
    the guarded session (`shared/outbound.py`). The POST names the agent, the contact and the
    campaign (its id and channel), and carries the messages from the campaign's own on."""
    headers = {"Authorization": f"Bearer {settings['secret']}"} if settings.get("secret") else {}
    payload = {
        "agent": {"id": agent["id"], "name": agent["name"], "instructions": agent["instructions"]},
        "contact": {k: contact.get(k) for k in ("id", "first_name", "last_name", "phone", "email", "company")},
        "campaign": {"id": conversation.campaign_id, "channel": conversation.channel},
        "messages": [dict(m) for m in conversation.messages],
    }
    body = await outbound.post_json(session, settings["url"], payload, headers)
    reply = body.get("reply") if isinstance(body, dict) else None
    return str(reply) if reply else None
