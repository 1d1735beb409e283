"""Inbound SMS: a keyword (STOP/START/HELP) changes the contact's opt-out; any other text is a
reply, matched to the delivery last sent to that number, counted, and answered by the campaign's
agent on the same channel (TwiML)."""

from __future__ import annotations

from typing import cast
from xml.sax.saxutils import escape

import asyncpg
import structlog
from aiohttp import web

from services.tracker import agents
from services.tracker.webhooks import WEBHOOKS, twiml, verified_form
from shared.db import tracking
from shared.domain.keywords import REPLIES, classify
from shared.domain.phone import InvalidPhone, to_e164
from shared.ids import new_id

log = structlog.get_logger()

_AGENT = """
SELECT a.* FROM agents a JOIN campaigns c ON c.agent_id = a.id WHERE c.id = $1
"""
_CONTACT = "SELECT * FROM contacts WHERE id = $1"


def answer_twiml(text: str | None) -> web.Response:
    """TwiML that sends `text` back (or nothing)."""
    if not text:
        return twiml()
    return twiml(f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}</Message></Response>')


async def sms_inbound(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/sms/inbound`: Twilio's "a message comes in" webhook."""
    form = await verified_form(request, "sms.inbound")
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    body = form.get("Body", "")
    try:
        sender = to_e164(form.get("From", ""))
    except InvalidPhone:
        WEBHOOKS.labels("sms.inbound", "bad_sender").inc()
        return twiml()
    pool: asyncpg.Pool = request.app["pool"]
    keyword = classify(body)
    async with pool.acquire() as conn, conn.transaction():
        if not await tracking.record_event(conn, "twilio", "sms.inbound", f"twilio:inbound:{sid}", None, form):
            WEBHOOKS.labels("sms.inbound", "duplicate").inc()
            return twiml()
        delivery = await tracking.latest_delivery_to(conn, sender, "sms")
        if delivery is None:
            WEBHOOKS.labels("sms.inbound", "unknown_sender").inc()
            log.info("reply.unmatched", provider_id=sid)
            return twiml()
        await tracking.add_message(conn, new_id("message"), delivery, "in", body, sid, "contact")
        if keyword in ("stop", "start"):
            await tracking.set_sms_opt_out(conn, delivery["contact_id"], keyword == "stop")
        elif keyword is None:
            await tracking.mark_replied(conn, delivery["id"])
        reply = REPLIES[keyword] if keyword else None
        if reply:
            await tracking.add_message(conn, new_id("message"), delivery, "out", reply, None, "system")
    WEBHOOKS.labels("sms.inbound", keyword or "reply").inc()
    log.info("reply.received", delivery_id=delivery["id"], campaign_id=delivery["campaign_id"], keyword=keyword)
    if keyword is None:
        reply = await agent_answer(request, pool, delivery)
    return answer_twiml(reply)


async def agent_answer(request: web.Request, pool: asyncpg.Pool, delivery: asyncpg.Record) -> str | None:
    agent = await pool.fetchrow(_AGENT, delivery["campaign_id"])
    if agent is None:
        return None
    contact = cast(asyncpg.Record, await pool.fetchrow(_CONTACT, delivery["contact_id"]))  # a foreign key
    history = [dict(r) for r in await tracking.history(pool, delivery["contact_id"], delivery["campaign_id"])]
    reply = await agents.answer(request.app["http"], agent, dict(contact), history)
    if reply:
        await tracking.add_message(pool, new_id("message"), delivery, "out", reply, None, "agent")
        log.info("agent.answered", delivery_id=delivery["id"], agent_id=agent["id"], mode=agent["mode"])
    return reply
