"""An email sender verified by its owner: `GET /senders/verify/{token}` (the link mailed by
`POST /senders`) shows a page with a Confirm button, which POSTs to the same address and marks the
account's sender verified. A GET changes nothing: mail scanners follow links."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import asyncpg
import structlog
from aiohttp import web

from services.tracker.unsubscribe import page
from services.tracker.webhooks import WEBHOOKS
from shared.db import senders
from shared.sender_verification import Claim, read_token

log = structlog.get_logger()

_CONFIRM = """<p>Confirm <strong>{address}</strong> as a sender of campaign emails?</p>
<form method="post"><button type="submit">Confirm</button></form>
"""
_DONE = "<p><strong>{address}</strong> is confirmed: campaigns may send from it.</p>"
_BAD = "<p>This confirmation link is not valid.</p>"
_EXPIRED = "<p>This confirmation link has expired. Add the sender again to get a new one.</p>"
_TAKEN = "<p><strong>{address}</strong> is already another account's sender.</p>"
_GONE = "<p>This sender was removed before it was confirmed. Add it again to get a new link.</p>"


def _refusal(claim: Claim | None) -> web.Response | None:
    """The page saying why the link confirms nothing, or None when it is good."""
    if claim is None:
        return page("Link not valid", _BAD, status=404)
    if claim.expired(datetime.now(UTC)):
        return page("Link expired", _EXPIRED, status=410)
    return None


async def confirm_page(request: web.Request) -> web.Response:
    """`GET /senders/verify/{token}`: what the link would confirm; changes nothing."""
    claim = read_token(request.app["unsubscribe_key"], request.match_info["token"])
    refused = _refusal(claim)
    if refused is not None or claim is None:
        WEBHOOKS.labels("sender.verify_page", "refused").inc()
        return refused or page("Link not valid", _BAD, status=404)
    return page("Confirm sender", _CONFIRM.format(address=escape(claim.address)))


async def confirm(request: web.Request) -> web.Response:
    """`POST /senders/verify/{token}`: the account's pending sender becomes verified (once; 409
    when another account verified the address first, 410 when the link expired)."""
    claim = read_token(request.app["unsubscribe_key"], request.match_info["token"])
    refused = _refusal(claim)
    if refused is not None or claim is None:
        WEBHOOKS.labels("sender.verify", "refused").inc()
        return refused or page("Link not valid", _BAD, status=404)
    await request.read()
    pool: asyncpg.Pool = request.app["pool"]
    address = escape(claim.address)
    try:
        row = await senders.verify(pool, claim.account_id, "email", claim.address)
    except asyncpg.UniqueViolationError:
        WEBHOOKS.labels("sender.verify", "taken").inc()
        return page("Already taken", _TAKEN.format(address=address), status=409)
    if row is None:
        WEBHOOKS.labels("sender.verify", "gone").inc()
        return page("Sender removed", _GONE, status=404)
    WEBHOOKS.labels("sender.verify", "verified").inc()
    log.info("sender.verified", account_id=claim.account_id, address=claim.address)
    return page("Sender confirmed", _DONE.format(address=address))
