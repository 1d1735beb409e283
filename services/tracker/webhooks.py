"""Provider webhooks: verify the signature → apply (status callbacks: group-committed) → 2xx quickly."""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import Counter

from services.tracker.signatures import TwilioSignatures
from services.tracker.statuses import StatusBatcher, StatusCallback
from shared.errors import Forbidden

log = structlog.get_logger()

WEBHOOKS = Counter("campaigns_webhooks_total", "Provider callbacks received", ["kind", "result"])
#: The status callbacks' counters by result, looked up once (the busiest webhook of all).
_STATUS_RESULTS = {r: WEBHOOKS.labels("sms.status", r) for r in ("applied", "stale", "unknown_delivery")}
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
    """`POST /webhooks/twilio/sms/status`: a message's status, applied in its batch (answered once
    committed) and never backwards: a repeat, or a status older than the one recorded, changes
    nothing."""
    form = await verified_form(request, "sms.status")
    callback = StatusCallback(
        delivery_id=request.query.get("delivery_id"),
        sid=form.get("MessageSid") or form.get("SmsSid"),
        status=(form.get("MessageStatus") or form.get("SmsStatus") or "").lower(),
        error_code=form.get("ErrorCode") or None,
    )
    statuses: StatusBatcher = request.app["statuses"]
    result = await statuses.apply(callback)
    _STATUS_RESULTS[result].inc()
    if result == "unknown_delivery":
        log.warning("webhook.unknown_delivery", provider_id=callback.sid, delivery_id=callback.delivery_id)
    return twiml()
