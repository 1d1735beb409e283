"""The LLM agent: an OpenAI-compatible chat-completions endpoint (base URL, model, key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from shared import outbound
from shared.row import Row


def chat_messages(agent: Row, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The agent's instructions as the system message, then the conversation: the contact's
    messages as the `user`'s, every other (the campaign's own message first, the agent's answers)
    as the `assistant`'s."""
    messages = [{"role": "system", "content": agent["instructions"] or f"You are {agent['name']}."}]
    for item in history:
        messages.append({"role": "user" if item["author"] == "contact" else "assistant", "content": item["body"]})
    return messages


async def answer(
    session: aiohttp.ClientSession,
    settings: Mapping[str, Any],
    agent: Row,
    history: Sequence[Mapping[str, str]],
) -> str | None:
    """The first choice's content from `{base_url}/chat/completions`."""
    url = str(settings["base_url"]).rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {settings['api_key']}"} if settings.get("api_key") else {}
    payload = {"model": settings.get("model", "gpt-4o-mini"), "messages": chat_messages(agent, history)}
    body = await outbound.post_json(session, url, payload, headers)
    content = body["choices"][0]["message"]["content"]
    return str(content).strip() or None
