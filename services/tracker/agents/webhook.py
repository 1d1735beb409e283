"""The webhook agent: POST the conversation to the user's URL, use its `reply`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from shared import outbound
from shared.row import Row


async def answer(
    session: aiohttp.ClientSession,
    settings: Mapping[str, Any],
    agent: Row,
    contact: Mapping[str, Any],
    history: Sequence[Mapping[str, str]],
) -> str | None:
    """`{"reply": "..."}` from `settings["url"]` (a `secret` is sent as a Bearer token), through
    the guarded session (`shared/outbound.py`)."""
    headers = {"Authorization": f"Bearer {settings['secret']}"} if settings.get("secret") else {}
    payload = {
        "agent": {"id": agent["id"], "name": agent["name"], "instructions": agent["instructions"]},
        "contact": {k: contact.get(k) for k in ("id", "first_name", "last_name", "phone", "email", "company")},
        "messages": list(history),
    }
    body = await outbound.post_json(session, settings["url"], payload, headers)
    reply = body.get("reply") if isinstance(body, dict) else None
    return str(reply) if reply else None
