"""Signing in with an API key (a session starts: its token in a cookie, never the key) and out."""

from __future__ import annotations

from aiohttp import web

from services.api.dashboard.web import COOKIE, CSRF_COOKIE, PATH, SESSION_HOURS, page, set_cookie
from shared.db import accounts


async def login_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/login` (a signed-in browser goes on to its campaigns)."""
    if request.get("account") is not None:
        raise web.HTTPSeeOther(PATH)
    return page(request, "login.html", error=None)


async def login(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/login` with `api_key` (and the form's CSRF token): a session, then the campaigns."""
    form = await request.post()
    key = str(form.get("api_key", "")).strip()
    if not key or await accounts.account_for_key(request.app["pool"], key) is None:
        return page(request, "login.html", status=401, error="That API key is not valid.")
    token = await accounts.start_session(request.app["pool"], key, SESSION_HOURS * 3600)
    response = web.HTTPSeeOther(PATH)
    set_cookie(request, response, COOKIE, token, SESSION_HOURS * 3600)
    response.del_cookie(CSRF_COOKIE, path=PATH)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/logout`: the session ends (its cookie no longer opens anything)."""
    await accounts.end_session(request.app["pool"], request["session_token"])
    response = web.HTTPSeeOther(PATH + "/login")
    response.del_cookie(COOKIE, path=PATH)
    raise response
