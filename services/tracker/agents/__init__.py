"""How an agent answers a contact's reply: `rules` (built in, offline), `webhook` or `llm`.

Each is given the conversation as the contact saw it, from the campaign's own message on (a call's
opening, on a call), so that it knows what the contact is answering.

Every answer is bounded by a timeout; an agent that fails or is slow gives no answer and never
breaks ingestion of the reply. A rule's configured reply is a template, rendered for the contact
as a campaign's message is; what a webhook or an LLM answers is sent as it is (never rendered: it
may quote the contact).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from services.tracker.agents import llm, rules, webhook
from services.tracker.agents.conversation import Conversation
from shared.db import tracking
from shared.db.connection import Executor
from shared.domain.templating import MissingVariable, TemplateError, contact_context, render, variables
from shared.outbound import OutboundRefused
from shared.row import Row

log = structlog.get_logger()

#: Seconds an agent may take to answer (Twilio waits 15 s for the webhook's TwiML).
TIMEOUT = 8.0


async def conversation_of(conn: Executor, delivery: Row) -> Conversation:
    """The conversation a reply to `delivery` belongs to, as the contact saw it."""
    rows = await tracking.history(conn, delivery["contact_id"], delivery["campaign_id"])
    return Conversation(delivery["campaign_id"], delivery["channel"], [dict(r) for r in rows])


async def answer(
    session: aiohttp.ClientSession,
    agent: Row,
    contact: Mapping[str, Any],
    conversation: Conversation,
    timeout: float = TIMEOUT,  # noqa: ASYNC109 (a per-call deadline, applied with asyncio.timeout below)
) -> str | None:
    """The agent's reply to the conversation's last message, or None (no answer, failure, timeout)."""
    mode = agent["mode"]
    settings = agent["settings"] or {}
    try:
        async with asyncio.timeout(timeout):
            if mode == "webhook":
                return await webhook.answer(session, settings, agent, contact, conversation)
            if mode == "llm":
                return await llm.answer(session, settings, agent, conversation.messages)
            last = conversation.messages[-1]["body"] if conversation.messages else ""
            reply = rules.answer(settings, last)
            return await asyncio.to_thread(personalised, reply, agent, contact) if reply else None
    except OutboundRefused as exc:  # a URL saved before it was refused, or a host that moved
        log.warning("agent.refused", agent_id=agent["id"], mode=mode, reason=str(exc))
        return None
    except Exception as exc:  # an agent never breaks ingestion
        log.warning("agent.failed", agent_id=agent["id"], mode=mode, error=repr(exc))
        return None


def personalised(reply: str, agent: Row, contact: Mapping[str, Any]) -> str:
    """A rule's `reply` rendered for the contact (the variables and sandbox of campaign messages).
    A variable the contact lacks is left empty; a reply that cannot be rendered at all (saved
    before replies were checked) goes as written. Either is logged."""
    context = contact_context(contact, agent["name"])
    try:
        return render(reply, context)
    except MissingVariable as exc:
        log.warning("agent.reply_variable_missing", agent_id=agent["id"], variable=exc.name)
        try:
            return render(reply, {**dict.fromkeys(variables(reply), ""), **context})
        except (MissingVariable, TemplateError) as again:
            log.warning("agent.reply_not_rendered", agent_id=agent["id"], error=str(again))
    except TemplateError as exc:
        log.warning("agent.reply_not_rendered", agent_id=agent["id"], error=str(exc))
    return reply
