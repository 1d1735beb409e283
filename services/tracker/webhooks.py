"""Provider webhooks: verify the signature → record once → apply → 2xx quickly."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import Counter

from services.tracker.signatures import TwilioSignatures
from shared.db import tracking
from shared.domain.deliveries import sms_status_change
from shared.errors import Forbidden

log = structlog.get_logger()

WEBHOOKS = Counter("campaigns_webhooks_total", "Provider callbacks received", ["kind", "result"])
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twiml(body: str = _EMPTY_TWIML) -> web.Response:
    """A TwiML answer."""
    return web.Response(text=body, content_type="text/xml")


async def verified_form(request: web.Request, kind: str) -> dict[str, str]:
    form = await request.post()
    signatures: TwilioSignatures = request.app["signatures"]
    if not signatures.valid(request.raw_path, form, request.headers.get("X-Twilio-Signature")):
        WEBHOOKS.labels(kind, "bad_signature").inc()
        log.warning("webhook.bad_signature", kind=kind, path=request.path)
        raise Forbidden("the X-Twilio-Signature header is missing or does not match")
    return {k: str(v) for k, v in form.items()}


async def sms_status(request: web.Request) -> web.Response:
    """`POST /webhooks/twilio/sms/status`: a message's status, applied once and never backwards."""
    form = await verified_form(request, "sms.status")
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    error_code = form.get("ErrorCode") or None
    delivery_id = request.query.get("delivery_id")
    key = request.headers.get("I-Twilio-Idempotency-Token") or f"{sid}:{status}:{error_code or ''}"
    pool: asyncpg.Pool = request.app["pool"]
    async with pool.acquire() as conn, conn.transaction():
        if not await tracking.record_event(conn, "twilio", "sms.status", "twilio:" + key, delivery_id, form):
            WEBHOOKS.labels("sms.status", "duplicate").inc()
            return twiml()
        delivery = await tracking.delivery_for_update(conn, delivery_id, sid)
        if delivery is None:
            WEBHOOKS.labels("sms.status", "unknown_delivery").inc()
            log.warning("webhook.unknown_delivery", provider_id=sid, delivery_id=delivery_id)
            return twiml()
        change = sms_status_change(delivery, status, error_code, datetime.now(UTC))
        if sid and delivery["provider_id"] is None:
            change["provider_id"] = sid
        await tracking.update_delivery(conn, delivery["id"], change)
    WEBHOOKS.labels("sms.status", "applied" if change else "stale").inc()
    log.info(
        "delivery.status",
        delivery_id=delivery["id"],
        campaign_id=delivery["campaign_id"],
        status=status,
        state=change.get("state", delivery["state"]),
    )
    return twiml()
