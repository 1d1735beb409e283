"""Voice webhooks: a call is a conversation. `answer` says the opening message and listens;
`gather` records what the contact said and says the agent's answer (or goodbye); `status` ends the
call: delivered and charged by the minute, or planned again (busy, no answer), or failed (and it
no longer counts against the campaign's max_concurrent). Each is verified (X-Twilio-Signature) and
recorded once."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import asyncpg
import structlog
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from services.tracker import agents
from services.tracker.replies import record_inbound
from services.tracker.signatures import TwilioSignatures
from services.tracker.webhooks import WEBHOOKS, twiml, verified_form
from shared.db import calls, tracking
from shared.domain.calls import answered_by, asks_to_stop, call_action, machine_detection
from shared.domain.templating import MissingVariable, TemplateError, contact_context, render
from shared.ids import new_id

log = structlog.get_logger()

#: Seconds the agent may take on a live call (Twilio waits 15 s for TwiML; the contact waits too).
AGENT_TIMEOUT = 5.0
GOODBYE = "Thank you for your time. Goodbye."
STOPPED = "Understood. We will not call you again. Goodbye."


def _key(request: web.Request, fallback: str) -> str:
    """The callback's dedupe key: Twilio's idempotency token, else `fallback`."""
    return "twilio:" + (request.headers.get("I-Twilio-Idempotency-Token") or fallback)


def say_attributes(voice: dict[str, Any] | None) -> dict[str, str]:
    """`<Say>` attributes from a campaign's voice settings (`voice`, `language`)."""
    settings = voice or {}
    return {k: str(settings[k]) for k in ("voice", "language") if isinstance(settings.get(k), str)}


def listening(text: str, voice: dict[str, Any] | None, action: str) -> str:
    """TwiML: say `text` in the campaign's voice, then gather the contact's speech and post it to
    `action`. The speech is recognised in the campaign's `language` too: without it on `<Gather>`,
    Twilio hears en-US whatever language `<Say>` spoke."""
    attributes = say_attributes(voice)
    response = VoiceResponse()
    if text:
        response.say(text, **attributes)
    heard_in = {"language": attributes["language"]} if "language" in attributes else {}
    response.gather(input="speech", action=action, speech_timeout="auto", action_on_empty_result=True, **heard_in)
    return str(response.to_xml())


def say_and_listen(request: web.Request, delivery: asyncpg.Record, text: str) -> str:
    """TwiML: say `text`, then gather the contact's speech and post it to our `gather` webhook."""
    signatures: TwilioSignatures = request.app["signatures"]
    action = signatures.url_for("/webhooks/twilio/voice/gather?" + urlencode({"delivery_id": delivery["id"]}))
    return listening(text, delivery["voice"], action)


def say_and_hang_up(text: str, delivery: asyncpg.Record | None = None) -> str:
    """TwiML: say `text` (if any), then hang up."""
    response = VoiceResponse()
    if text:
        response.say(text, **say_attributes(delivery["voice"] if delivery is not None else None))
    response.hangup()
    return str(response.to_xml())


async def voice_answer(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/voice/answer?delivery_id=…`: the call was answered. With answering
    machine detection on, `AnsweredBy` says by whom (recorded on the delivery): a person gets the
    conversation; a machine is hung up on, or left the campaign's voicemail message after the beep
    (`call_action`). A voicemail is no reply and no agent turn. Who answered is recorded once: a
    repeated answer for a call already answered changes nothing and is answered as the first was."""
    form = await verified_form(request, "voice.answer")
    sid = form.get("CallSid", "")
    who = answered_by(form.get("AnsweredBy"))
    pool: asyncpg.Pool = request.app["pool"]
    async with pool.acquire() as conn, conn.transaction():
        delivery = await calls.call_for_update(conn, request.query.get("delivery_id"))
        if delivery is None:
            WEBHOOKS.labels("voice.answer", "unknown_delivery").inc()
            return twiml(say_and_hang_up(""))
        first = await tracking.record_event(
            conn, "twilio", "voice.answer", _key(request, f"{sid}:answer"), delivery["id"], form
        )
        if delivery["answered_by"] is not None:
            # Answered before (a repeat, even under a new idempotency token): the first answer wins,
            # and the call is answered as it was then; nothing is recorded again.
            first, who = False, delivery["answered_by"]
        elif first and who is None and await tracking.said_on_call(conn, delivery, sid):
            first = False  # no detection, so no `answered_by` to tell a repeat by: the opening said
        action = call_action(machine_detection(delivery["voice"]), who)
        if first and who is not None:
            await calls.record_answered_by(conn, delivery["id"], who)
        opening = delivery["rendered"] or ""
        if first and opening and action == "converse":
            await tracking.add_message(conn, new_id("message"), delivery, "out", opening, sid, "agent")
    WEBHOOKS.labels("voice.answer", ("applied" if first else "duplicate") if action == "converse" else action).inc()
    log.info(
        "call.answered",
        delivery_id=delivery["id"],
        campaign_id=delivery["campaign_id"],
        provider_id=sid,
        answered_by=who,
        action=action,
    )
    if action == "hang_up":
        return twiml(say_and_hang_up(""))
    if action == "leave_message":
        message = await _voicemail(pool, delivery)
        if first and message:
            await tracking.add_message(pool, new_id("message"), delivery, "out", message, sid, "system")
        return twiml(say_and_hang_up(message or "", delivery))
    return twiml(say_and_listen(request, delivery, opening))


async def _voicemail(pool: asyncpg.Pool, delivery: asyncpg.Record) -> str | None:
    """The campaign's `voicemail_message` rendered for the contact called (in the same sandbox and
    budget as every message), or None when it cannot be (the call then hangs up without one)."""
    source = (delivery["voice"] or {}).get("voicemail_message") or ""
    contact = await calls.contact(pool, delivery["contact_id"])
    agent = await calls.agent(pool, delivery["campaign_id"])
    if not source or contact is None:
        return None
    try:
        text = render(source, contact_context(dict(contact), agent["name"] if agent else None))
    except (MissingVariable, TemplateError) as exc:
        log.warning("voicemail.not_rendered", delivery_id=delivery["id"], error=str(exc))
        return None
    return text.strip() or None


async def voice_gather(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/voice/gather?delivery_id=…`: what the contact said (SpeechResult)."""
    form = await verified_form(request, "voice.gather")
    sid = form.get("CallSid", "")
    speech = (form.get("SpeechResult") or "").strip()
    stop = bool(speech) and asks_to_stop(speech)
    pool: asyncpg.Pool = request.app["pool"]
    async with pool.acquire() as conn, conn.transaction():
        delivery = await calls.call_for_update(conn, request.query.get("delivery_id"))
        if delivery is None:
            WEBHOOKS.labels("voice.gather", "unknown_delivery").inc()
            return twiml(say_and_hang_up(GOODBYE))
        first = await tracking.record_event(
            conn, "twilio", "voice.gather", _key(request, f"{sid}:gather:{speech}"), delivery["id"], form
        )
        if first and speech:  # what it does is decided as for a text or an email (a stop is no reply)
            await record_inbound(conn, delivery, speech, sid, "stop" if stop else None)
            if stop:
                await tracking.add_message(conn, new_id("message"), delivery, "out", STOPPED, None, "system")
    kind = "silence" if not speech else "stop" if stop else "speech"
    WEBHOOKS.labels("voice.gather", kind if first else "duplicate").inc()
    log.info("call.speech", delivery_id=delivery["id"], campaign_id=delivery["campaign_id"], kind=kind)
    if stop:
        return twiml(say_and_hang_up(STOPPED, delivery))
    reply = await _agent_answer(request, pool, delivery, record=first) if speech else None
    if not reply:
        if first:
            await tracking.add_message(pool, new_id("message"), delivery, "out", GOODBYE, None, "system")
        return twiml(say_and_hang_up(GOODBYE, delivery))
    return twiml(say_and_listen(request, delivery, reply))


async def _agent_answer(request: web.Request, pool: asyncpg.Pool, delivery: asyncpg.Record, record: bool) -> str | None:
    """The campaign's agent's answer to the conversation so far (None: no answer, failure, timeout)."""
    agent = await calls.agent(pool, delivery["campaign_id"])
    contact = await calls.contact(pool, delivery["contact_id"])
    if agent is None or contact is None:
        return None
    conversation = await agents.conversation_of(pool, delivery)
    reply = await agents.answer(request.app["http"], agent, dict(contact), conversation, timeout=AGENT_TIMEOUT)
    if reply and record:
        await tracking.add_message(pool, new_id("message"), delivery, "out", reply, None, "agent")
        log.info("agent.answered", delivery_id=delivery["id"], agent_id=agent["id"], mode=agent["mode"])
    return reply


def _seconds(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def voice_status(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/voice/status?delivery_id=…`: a call's progress, applied once and never
    backwards; a call that ends no longer counts against max_concurrent."""
    form = await verified_form(request, "voice.status")
    sid = form.get("CallSid") or None
    status = (form.get("CallStatus") or "").lower()
    delivery_id = request.query.get("delivery_id")
    pool: asyncpg.Pool = request.app["pool"]
    async with pool.acquire() as conn, conn.transaction():
        if not await tracking.record_event(
            conn, "twilio", "voice.status", _key(request, f"{sid}:{status}"), delivery_id, form
        ):
            WEBHOOKS.labels("voice.status", "duplicate").inc()
            return twiml()
        delivery = await calls.call_for_update(conn, delivery_id)
        if delivery is None:
            WEBHOOKS.labels("voice.status", "unknown_delivery").inc()
            log.warning("webhook.unknown_delivery", provider_id=sid, delivery_id=delivery_id)
            return twiml()
        outcome = await calls.apply_status(
            conn, delivery, sid, status, _seconds(form.get("CallDuration")), form.get("ErrorCode") or None
        )
    WEBHOOKS.labels("voice.status", "applied" if outcome.change else "stale").inc()
    log.info(
        "call.status",
        delivery_id=delivery["id"],
        campaign_id=delivery["campaign_id"],
        status=status,
        state=outcome.change.get("state", delivery["state"]),
        reason=outcome.reason,
        minutes=outcome.minutes,
    )
    return twiml()
