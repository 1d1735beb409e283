"""One-click unsubscribe (RFC 8058). The mail client POSTs `List-Unsubscribe=One-Click` to the
link in the `List-Unsubscribe` header: the contact is opted out of email, answered 200 (never a
redirect), as often as it comes. A GET only shows a page with a button that makes that POST: mail
scanners follow links, and a GET must never unsubscribe anyone."""

from __future__ import annotations

from html import escape

import asyncpg
import structlog
from aiohttp import web

from services.tracker.webhooks import WEBHOOKS
from shared.db import breaker, sending
from shared.errors import NotFound
from shared.unsubscribe import Subscription, read_token

log = structlog.get_logger()

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the link is the credential: never leak it onward
    "X-Robots-Tag": "noindex, nofollow",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex, nofollow">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""
_CONFIRM = """<p>Stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>
"""
_DONE = "<p>You will not receive these emails any more.</p>"
_BAD = "<p>This unsubscribe link is not valid. Please use the link in the most recent email.</p>"


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A small HTML page (no caching, no referrer: the link in the address bar is a credential)."""
    return web.Response(
        text=_PAGE.format(title=escape(title), body=body), status=status, content_type="text/html", headers=_HEADERS
    )


def _subscription(request: web.Request) -> Subscription | None:
    found = read_token(request.app["unsubscribe_key"], request.match_info["token"])
    return found if found is not None and found.channel == "email" else None


async def unsubscribe_page(request: web.Request) -> web.Response:
    """`GET /unsubscribe/{token}`: a confirmation page; changes nothing."""
    if _subscription(request) is None:
        WEBHOOKS.labels("email.unsubscribe_page", "bad_token").inc()
        return page("Link not valid", _BAD, status=404)
    return page("Unsubscribe", _CONFIRM)


async def unsubscribe(request: web.Request) -> web.Response:
    """`POST /unsubscribe/{token}` (body `List-Unsubscribe=One-Click`): opt the contact out of email."""
    found = _subscription(request)
    if found is None:
        WEBHOOKS.labels("email.unsubscribe", "bad_token").inc()
        raise NotFound("this unsubscribe link is not valid")
    await request.read()  # the body says One-Click; the signed link alone names the contact
    pool: asyncpg.Pool = request.app["pool"]
    async with pool.acquire() as conn, conn.transaction():  # the opt-out and its count, together
        changed = await sending.unsubscribe_email(conn, found.account_id, found.contact_id)
        if changed:
            await breaker.count_opt_out_of_latest(conn, found.contact_id, "email")
    WEBHOOKS.labels("email.unsubscribe", "applied" if changed else "repeat").inc()
    log.info(
        "contact.unsubscribed",
        contact_id=found.contact_id,
        account_id=found.account_id,
        channel="email",
        changed=changed,
    )
    return page("Unsubscribed", _DONE)
