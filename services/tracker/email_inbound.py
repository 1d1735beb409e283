"""`POST /webhooks/email/inbound`: a raw email that came back (`message/rfc822` body), as an
inbound-mail route of an email provider or a mailbox poller hands it over. A bounce report makes its
delivery undelivered and the address skipped by later email campaigns; a reply is matched to its
delivery (by `In-Reply-To`/`References`, and only from the address it was sent to), counted, kept
in the conversation and answered by the campaign's agent by email, in the same thread; one of just
an opt-out keyword (STOP) opts the address out and is no reply, as by SMS (`replies.record_inbound`).
Authenticated with `Authorization: Bearer $CAMPAIGNS_INBOUND_EMAIL_TOKEN`; a repeated delivery of
the same email counts once.
"""

from __future__ import annotations

import hmac
import re

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import Counter

from services.tracker.replies import agent_answer, record_inbound
from shared.db import balance, inbound, tracking
from shared.db.connection import Connection
from shared.domain.inbound_email import InboundEmail, parse, thread_of
from shared.domain.keywords import classify
from shared.errors import Invalid, NotFound, Unauthorized
from shared.ids import new_id
from shared.providers.base import ProviderError
from shared.providers.smtp_email import Email, message_id
from shared.settings import Settings
from shared.unsubscribe import make_token

log = structlog.get_logger()

INBOUND = Counter("campaigns_inbound_email_total", "Emails that came back", ["kind", "result"])
#: How an email starts: a header field's name and its colon (or an mbox "From " line before it).
_HEADER = re.compile(rb"(From |[!-9;-~]+:)")
#: Largest inbound email taken (a bounce quotes the original message; attachments are not needed).
MAX_BYTES = 10 * 1024 * 1024


def _authorised(request: web.Request) -> None:
    token = request.app.get("inbound_email_token")
    if token is None:
        raise NotFound("inbound email is not enabled (set CAMPAIGNS_INBOUND_EMAIL_TOKEN)")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("the Authorization header is missing or does not carry the inbound email token")


async def inbound_email(request: web.Request) -> web.Response:
    """Apply one email that came back; 200 `{"kind", "result", "delivery_id"}`."""
    _authorised(request)
    raw = bytearray()
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > MAX_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BYTES, actual_size=len(raw))
    if not _HEADER.match(bytes(raw).lstrip(b"\r\n")):
        raise Invalid(
            "the body is not an email message",
            details=[{"field": "body", "reason": "expected the raw RFC 5322 email, starting with its header fields"}],
        )
    mail = parse(bytes(raw))
    pool: asyncpg.Pool = request.app["pool"]
    result, delivery_id = "unmatched", None
    async with pool.acquire() as conn, conn.transaction():
        delivery = await tracking.email_delivery_for_update(conn, mail.about) if mail.about else None
        delivery_id = delivery["id"] if delivery is not None else None
        payload = {"kind": mail.kind, "from": mail.sender, "status": mail.status, "about": mail.about}
        if not await tracking.record_event(conn, "email", "email.inbound", mail.dedupe_key, delivery_id, payload):
            result = "duplicate"
        elif delivery is None:
            pass
        elif mail.kind == "bounce":
            error = f"bounced {mail.status}: {mail.diagnostic}".strip(": ")
            result = "bounced" if await tracking.bounce_email(conn, delivery, error) else "stale"
        elif mail.kind == "reply" and mail.sender != (delivery["to_address"] or "").lower():
            result = "not_from_recipient"  # a forward, or someone naming a message id they should not know
        elif mail.kind == "reply" and await _to_another_account(conn, mail, delivery["account_id"]):
            result = "other_account"  # written to another account's sender address: not this account's
        elif mail.kind == "reply":
            keyword = classify(mail.text, "email")  # a reply of just "STOP" or "unsubscribe": no reply
            await record_inbound(conn, delivery, mail.text, None, keyword)
            result = "opted_out" if keyword == "stop" else "replied"
        else:
            result = "ignored"
    if result == "replied" and delivery is not None:
        await _answer(request, pool, delivery, mail)
    INBOUND.labels(mail.kind, result).inc()
    log.info("email.inbound", kind=mail.kind, result=result, delivery_id=delivery_id, status=mail.status or None)
    return web.json_response({"kind": mail.kind, "result": result, "delivery_id": delivery_id})


async def _to_another_account(conn: Connection, mail: InboundEmail, account_id: str) -> bool:
    """Whether the reply was written to an address that is another account's sender (an email
    belongs to the account that owns the address it was sent to)."""
    for address in mail.recipients:
        owner = await inbound.owner(conn, "email", address)
        if owner is not None and owner != account_id:
            return True
    return False


async def _answer(request: web.Request, pool: asyncpg.Pool, delivery: asyncpg.Record, mail: InboundEmail) -> None:
    """The campaign's agent answers the reply by email, in its thread, from the address the campaign
    wrote from. A failing agent or relay is logged; the reply stays recorded either way."""
    answered = await agent_answer(request, pool, delivery)
    if answered is None:
        return
    settings: Settings = request.app["settings"]
    from_address = await tracking.campaign_sender(pool, delivery["campaign_id"])
    sender = from_address if from_address and "@" in from_address else settings.default_from_email
    token = make_token(request.app["unsubscribe_key"], delivery["account_id"], delivery["contact_id"], "email")
    subject = mail.subject if mail.subject.lower().startswith("re:") else f"Re: {mail.subject}".strip()
    answer = Email(
        sender=sender,
        to=delivery["to_address"],
        subject=subject,
        text=answered.text,
        html=None,
        message_id=message_id(new_id("message"), sender),
        list_unsubscribe=f"{settings.public_url.rstrip('/')}/unsubscribe/{token}",
        in_reply_to=mail.message_id or None,
        references=thread_of(mail) or None,  # the Email puts the reply's Message-ID after it
    )
    try:
        await request.app["smtp"].send_email(answer)
    except ProviderError as exc:  # not sent: its charge comes back, and its message says why
        async with pool.acquire() as conn, conn.transaction():
            await balance.refund_reply(conn, delivery["account_id"], answered.cost)
            await tracking.unsent(conn, answered.message_id, f"not sent: {exc}")
        log.warning("email.answer_failed", delivery_id=delivery["id"], error=str(exc))
        return
    log.info("email.answered", delivery_id=delivery["id"], message_id=answer.message_id)
