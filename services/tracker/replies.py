"""Inbound SMS: the message belongs to the account that owns the number it was sent to (a
verified sender), and answers that account's latest delivery to the sender; for the platform's
shared default number, the latest delivery sent from it to the sender, whichever account's. A
keyword (STOP/START/HELP) changes the contact's opt-out (to the shared default number: in every
account that has sent to the phone from it, as the person unsubscribed from that number); any
other text is a reply, counted and answered by the campaign's agent on the same channel (TwiML).
A message to a number no account owns is answered with nothing, and logged."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

import asyncpg
import structlog
from aiohttp import web

from services.tracker import agents
from services.tracker.webhooks import WEBHOOKS, twiml, verified_form
from shared.db import balance, breaker, calls, inbound, sending, tracking
from shared.db.connection import Connection
from shared.domain.keywords import REPLIES, Keyword, classify
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.pricing import sms_segments
from shared.domain.sms import fit
from shared.ids import new_id
from shared.settings import Settings

log = structlog.get_logger()


def answer_twiml(text: str | None) -> web.Response:
    """TwiML that sends `text` back (or nothing)."""
    if not text:
        return twiml()
    return twiml(f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}</Message></Response>')


def _e164(raw: str) -> str | None:
    try:
        return to_e164(raw)
    except InvalidPhone:
        return None


async def sms_inbound(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/sms/inbound`: Twilio's "a message comes in" webhook."""
    form = await verified_form(request, "sms.inbound")
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    body = form.get("Body", "")
    sender, to = _e164(form.get("From", "")), _e164(form.get("To", ""))
    if sender is None:
        WEBHOOKS.labels("sms.inbound", "bad_sender").inc()
        return twiml()
    settings: Settings = request.app["settings"]
    pool: asyncpg.Pool = request.app["pool"]
    keyword = classify(body)
    async with pool.acquire() as conn, conn.transaction():
        if not await tracking.record_event(conn, "twilio", "sms.inbound", f"twilio:inbound:{sid}", None, form):
            WEBHOOKS.labels("sms.inbound", "duplicate").inc()
            return twiml()
        account_id = await inbound.owner(conn, "phone", to) if to else None
        shared = account_id is None and to == settings.default_from_number
        if account_id is not None:
            delivery = await inbound.latest_in_account(conn, account_id, sender, "sms")
        elif shared:
            delivery = await inbound.latest_from_default(conn, sender, "sms", settings.default_from_number)
        else:
            WEBHOOKS.labels("sms.inbound", "unowned_number").inc()
            log.warning("reply.unowned_number", to=to or form.get("To"), provider_id=sid)
            return twiml()
        if delivery is None:
            return await _without_delivery(conn, account_id, sender, keyword, sid)
        if shared and keyword in ("stop", "start"):  # every account that sent from it, whoever sent last
            changed = await inbound.set_sms_opt_out_from_default(
                conn, sender, settings.default_from_number, keyword == "stop"
            )
            log.info("reply.shared_number_keyword", keyword=keyword, contacts=changed)
        if not await inbound.contact_exists(conn, delivery["contact_id"]):  # deleted since: kept as an event
            WEBHOOKS.labels("sms.inbound", "contact_deleted").inc()
            log.info("reply.contact_deleted", delivery_id=delivery["id"], campaign_id=delivery["campaign_id"])
            return twiml()
        await record_inbound(conn, delivery, body, sid, keyword)
        reply = REPLIES[keyword] if keyword else None
        if reply:  # a compliance answer: always sent, and charged even below a zero balance
            cost = await balance.charge_reply(conn, delivery["account_id"], "sms", sms_segments(reply), always=True)
            await tracking.add_message(conn, new_id("message"), delivery, "out", reply, None, "system", cost=cost)
    WEBHOOKS.labels("sms.inbound", keyword or "reply").inc()
    log.info("reply.received", delivery_id=delivery["id"], campaign_id=delivery["campaign_id"], keyword=keyword)
    if keyword is None:
        answered = await agent_answer(request, pool, delivery)
        reply = answered.text if answered else None
    return answer_twiml(reply)


async def record_inbound(
    conn: Connection, delivery: asyncpg.Record, body: str, provider_id: str | None, keyword: Keyword | None
) -> None:
    """A contact's message answering `delivery` (by SMS or by email), kept in its conversation, and
    what it does; `keyword` is `classify(body, channel)`. A keyword is no reply: STOP opts the
    contact out of the delivery's channel and counts against the campaign's opt-out rate, START
    opts it back in (SMS), HELP changes nothing. Any other text is a reply: the delivery's first
    sets its `replied_at`, which `replied`, the reply rate and the response time count."""
    await tracking.add_message(conn, new_id("message"), delivery, "in", body, provider_id, "contact")
    if keyword == "stop":
        await sending.opt_out(conn, [delivery["contact_id"]], delivery["channel"])
        await breaker.count_opt_out(conn, delivery["campaign_id"])
    elif keyword == "start":
        await tracking.set_sms_opt_out(conn, delivery["contact_id"], False)
    elif keyword is None:
        await tracking.mark_replied(conn, delivery["id"])


async def _without_delivery(
    conn: Connection, account_id: str | None, sender: str, keyword: Keyword | None, sid: str
) -> web.Response:
    """A message no delivery explains: a keyword to an account's own number still acts on that
    account's contacts with the number (STOP is honoured wherever it comes from: from a phone the
    account has no contact for, it is remembered as a new, opted-out contact, which its later
    campaigns skip). A keyword to the shared default number (`account_id` None) from a phone no
    account has sent to from it is answered: there is nothing to change. The rest is unmatched."""
    if keyword is None:
        WEBHOOKS.labels("sms.inbound", "unknown_sender").inc()
        log.info("reply.unmatched", provider_id=sid)
        return twiml()
    changed = 0
    if account_id is not None and keyword == "stop":
        changed = await inbound.opt_out_sms(conn, new_id("contact"), account_id, sender)
    elif account_id is not None and keyword == "start":
        changed = await inbound.set_sms_opt_out(conn, account_id, sender, False)
    cost = None  # to the shared default number from a phone no account sent to: nobody's to pay
    if account_id is not None:  # sent from the account's own number: its answer, charged as any
        cost = await balance.charge_reply(conn, account_id, "sms", sms_segments(REPLIES[keyword]), always=True)
    WEBHOOKS.labels("sms.inbound", keyword).inc()
    log.info(
        "reply.keyword_without_delivery",
        account_id=account_id,
        keyword=keyword,
        contacts=changed,
        cost=None if cost is None else str(cost),
    )
    return answer_twiml(REPLIES[keyword])


@dataclass(frozen=True)
class AgentReply:
    """An agent's answer as recorded, to be sent: its text, its message, what it was charged."""

    text: str
    message_id: str
    cost: Decimal


async def agent_answer(request: web.Request, pool: asyncpg.Pool, delivery: asyncpg.Record) -> AgentReply | None:
    """The campaign's agent's answer to the conversation (SMS or email), recorded and charged to
    the account (None: no agent, no contact any more, or no answer). By SMS it is cut to what an
    SMS holds and charged by segment, by email charged as one email. One the balance cannot cover
    is recorded with why, and not sent (None)."""
    agent = await calls.agent(pool, delivery["campaign_id"])
    contact = await calls.contact(pool, delivery["contact_id"])
    if agent is None or contact is None:
        return None
    conversation = await agents.conversation_of(pool, delivery)
    reply = await agents.answer(request.app["http"], agent, dict(contact), conversation)
    if not reply:
        return None
    return await _paid_reply(pool, delivery, agent, reply)


async def _paid_reply(
    pool: asyncpg.Pool, delivery: asyncpg.Record, agent: asyncpg.Record, reply: str
) -> AgentReply | None:
    """An agent's reply charged and recorded with its cost; None when the balance cannot cover it
    (recorded with why, never sent: an agent's reply never takes the balance below zero). After the
    agent has answered: no network call in here."""
    channel, text, units = delivery["channel"], reply, 1
    if channel == "sms":
        text = fit(reply)
        if text != reply:
            log.info("agent.reply_cut", delivery_id=delivery["id"], agent_id=agent["id"], length=len(reply))
        units = sms_segments(text)
    message_id = new_id("message")
    async with pool.acquire() as conn, conn.transaction():
        cost = await balance.charge_reply(conn, delivery["account_id"], channel, units, always=False)
        error = None
        if cost is None:
            error = _unpaid(await balance.reply_shortfall(conn, delivery["account_id"], channel, units))
        await tracking.add_message(conn, message_id, delivery, "out", text, None, "agent", cost=cost, error=error)
    if cost is None:
        log.warning("agent.reply_unpaid", delivery_id=delivery["id"], agent_id=agent["id"], reason=error)
        return None
    log.info("agent.answered", delivery_id=delivery["id"], agent_id=agent["id"], mode=agent["mode"], cost=str(cost))
    return AgentReply(text, message_id, cost)


def _unpaid(shortfall: asyncpg.Record | None) -> str:
    """Why a reply was not sent: the balance could not cover it."""
    if shortfall is None:
        return "not sent: the account is gone"
    return f"not sent: the balance ({shortfall['balance']}) cannot cover the reply ({shortfall['cost']})"
