"""What every dashboard page shares: the signed-in account (a session cookie, never the key),
CSRF protection on every form, security headers, HTML error pages, and rendering.

A session's token lives in an HttpOnly, SameSite=Strict cookie, Secure whenever the browser came
over TLS (directly or through a proxy that says so in `X-Forwarded-Proto` or `Forwarded`). Every
POST carries a CSRF token: for a signed-in browser an HMAC of its session token (which a page of
another site can neither read nor compute), for the sign-in form a random value held in a cookie
of its own (double submit)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import jinja2
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from markupsafe import Markup

from services.api.dashboard import text
from shared.db import accounts
from shared.errors import AppError, NotFound

#: The session cookie (its token's hash is what the database keeps).
COOKIE = "campaigns_session"
#: The sign-in form's CSRF cookie (before there is a session).
CSRF_COOKIE = "campaigns_csrf"
#: How long a dashboard sign-in lasts.
SESSION_HOURS = 12
#: Where the dashboard's cookies apply.
PATH = "/dashboard"
#: Form field and header that carry the CSRF token.
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRF-Token"
#: Pages reachable without a session.
PUBLIC = frozenset({"/dashboard/login"})
#: Content-Security-Policy of every page: nothing inline, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("services.api.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    plural=text.plural,
    when=text.when,
    figure=text.figure,
    duration=text.duration,
    money=text.money,
)
ENV.globals.update(
    reason_lines=text.reason_lines,
    setting_lines=text.setting_lines,
    who=text.who,
    local_time=text.local_time,
    quote=lambda value: quote(str(value), safe=""),
)


class Forbidden(AppError):
    """This form has expired or did not come from this dashboard: reload the page and try again."""

    status = 403
    code = "forbidden"


def secure(request: web.Request) -> bool:
    """Whether the browser reached us over TLS, directly or through a proxy that says so."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded == "https":
        return True
    first = request.headers.get("Forwarded", "").split(",")[0]
    return any(part.strip().lower() == "proto=https" for part in first.split(";"))


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    """An HttpOnly, SameSite=Strict cookie for the dashboard's paths (Secure over TLS)."""
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", path=PATH, max_age=max_age, secure=secure(request)
    )


def csrf_token(request: web.Request) -> str:
    """The token every form of this page must send back."""
    session = request.get("session_token")
    if session:
        return hmac.new(session.encode(), b"campaigns-dashboard-csrf", hashlib.sha256).hexdigest()
    token: str = request.get("login_csrf") or request.cookies.get(CSRF_COOKIE) or ""
    if not token:
        token = secrets.token_urlsafe(32)
        request["login_csrf"] = token
    return token


async def check_csrf(request: web.Request) -> None:
    """Forbidden unless the POST carries this browser's token (a form field, or the header for
    the page's own scripts)."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type == "multipart/form-data":
        # An upload is streamed: its first part must be the token; the view reads on from there.
        try:
            reader = await request.multipart()
            first = await reader.next()
            if isinstance(first, BodyPartReader) and first.name == CSRF_FIELD:
                sent = (await first.text()).strip()
        except (ValueError, HttpProcessingError) as exc:  # not a multipart body after all
            raise Forbidden() from exc
        request["multipart"] = reader
    elif sent is None and request.content_type == "application/x-www-form-urlencoded":
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    expected = csrf_token(request) if (request.get("session_token") or request.cookies.get(CSRF_COOKIE)) else ""
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware() -> Any:
    """For `/dashboard` paths: the session's account into `request["account"]` (else to the
    sign-in page), CSRF on every POST, security headers, and AppErrors as HTML pages."""

    @web.middleware
    async def dashboard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PATH):
            return await handler(request)
        try:
            if not request.path.startswith(PATH + "/static/"):
                await _sign_in(request)
                if request.method == "POST":
                    await check_csrf(request)
            response = await handler(request)
        except AppError as exc:
            response = page(request, "error.html", status=exc.status, error=exc)
        except web.HTTPNotFound:
            response = page(request, "error.html", status=404, error=NotFound("There is no such page."))
        _headers(request, response)
        return response

    return dashboard


async def _sign_in(request: web.Request) -> None:
    token = request.cookies.get(COOKIE)
    account = await accounts.account_for_session(request.app["pool"], token) if token else None
    if account is not None:
        request["account"], request["session_token"] = account, token
    elif request.path not in PUBLIC:
        if request.headers.get("Accept", "").startswith("text/event-stream"):
            raise web.HTTPUnauthorized()
        raise web.HTTPSeeOther(PATH + "/login")


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:  # a stream (server-sent events) already sent its headers
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith(PATH + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if request.get("login_csrf"):
        set_cookie(request, response, CSRF_COOKIE, request["login_csrf"], SESSION_HOURS * 3600)


def render(request: web.Request, name: str, **context: Any) -> str:
    """A template rendered with what every page shows (the account, the CSRF token, the path)."""
    shared = {
        "account": request.get("account"),
        "csrf": csrf_token(request),
        "path": request.path,
        "now": datetime.now().astimezone(),
    }
    return ENV.get_template(name).render({**shared, **context})


def page(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    """A whole HTML page."""
    return web.Response(text=render(request, name, **context), content_type="text/html", status=status)


def fragment(name: str, macro: str, **arguments: Any) -> Markup:
    """One macro of a template, rendered alone (for the live updates)."""
    found = getattr(ENV.get_template(name).make_module(), macro)
    return Markup(found(**{k: v for k, v in arguments.items() if k in found.arguments}))  # noqa: S704 (autoescaped)


def field_errors(exc: AppError, rename: Callable[[str], str] = str) -> dict[str, list[str]]:
    """An error's details by form field: `contacts[3]` under `contacts` (its index kept in the
    reason), `sending_window.start_hour` under `start_hour`, groups under `contact_group_ids`; a
    form's own names for the rest from `rename`."""
    found: dict[str, list[str]] = {}
    for detail in exc.details:
        name = str(detail.get("field") or "")
        base = rename(name.split("[", 1)[0])
        key = {
            "contact_group_id": "contact_group_ids",
            "sending_window": "start_hour",
        }.get(base, base)
        if key.startswith("sending_window."):
            key = key.removeprefix("sending_window.")
        if key.startswith("settings."):
            key = "settings"
        reason = str(detail.get("reason") or exc.message)
        found.setdefault(key, []).append(f"{name}: {reason}" if "[" in name else reason)
    if not found:
        found["form"] = [exc.message]
    return found


def account_of(request: web.Request) -> asyncpg.Record:
    """The signed-in account (the middleware put it there)."""
    account: asyncpg.Record = request["account"]
    return account
