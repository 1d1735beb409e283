"""Dashboard pages. Sign in with an API key; the browser then holds a session token (an HttpOnly,
SameSite=Strict cookie; never the key itself), and every page is scoped to the key's account,
like the API. A session lasts SESSION_HOURS, until sign-out, or until its key is revoked."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import asyncpg
import jinja2
from aiohttp import web

from services.api.usecases.campaigns import apply_action, platform_senders
from shared.db import accounts
from shared.db import campaigns as db
from shared.domain.results import Counts, results
from shared.errors import AppError

COOKIE = "campaigns_session"
#: How long a dashboard sign-in lasts.
SESSION_HOURS = 12
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("services.api.dashboard", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
)
_MESSAGES = """
SELECT m.direction, m.author, m.body, m.created_at, c.phone, c.email, c.first_name, c.last_name
FROM messages m JOIN contacts c ON c.id = m.contact_id
WHERE m.campaign_id = $1 ORDER BY m.contact_id, m.created_at, m.id LIMIT 500
"""
#: Which buttons each state shows.
ACTIONS = {
    "draft": ("launch", "cancel"),
    "scheduled": ("pause", "cancel"),
    "running": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}


def _page(name: str, **context: Any) -> web.Response:
    return web.Response(text=_ENV.get_template(name).render(**context), content_type="text/html")


async def _account(request: web.Request) -> asyncpg.Record | None:
    token = request.cookies.get(COOKIE)
    return await accounts.account_for_session(request.app["pool"], token) if token else None


def _folded(row: Any, counts: Any) -> dict[str, Any]:
    folded = (
        Counts(**{k: counts[k] for k in Counts.__dataclass_fields__}) if counts else Counts(total=row["total_contacts"])
    )
    body = results(row["id"], row["status"], folded)
    done = body["total_contacts"] - body["pending"]
    body["progress"] = round(100 * done / body["total_contacts"]) if body["total_contacts"] else 0
    return body


async def login_form(request: web.Request) -> web.Response:
    """`GET /dashboard/login`."""
    return _page("login.html", error=None)


async def login(request: web.Request) -> web.Response:
    """`POST /dashboard/login` with `api_key`: check it, start a session (its token in a cookie),
    go to the campaigns."""
    form = await request.post()
    key = str(form.get("api_key", "")).strip()
    if not key or await accounts.account_for_key(request.app["pool"], key) is None:
        response = _page("login.html", error="That API key is not valid.")
        response.set_status(401)
        return response
    token = await accounts.start_session(request.app["pool"], key, SESSION_HOURS * 3600)
    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/dashboard",
        max_age=SESSION_HOURS * 3600,
        secure=request.secure,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """`POST /dashboard/logout`: end the session."""
    token = request.cookies.get(COOKIE)
    if token:
        await accounts.end_session(request.app["pool"], token)
    response = web.HTTPSeeOther("/dashboard/login")
    response.del_cookie(COOKIE, path="/dashboard")
    raise response


async def campaigns_page(request: web.Request) -> web.Response:
    """`GET /dashboard`: the account's campaigns with their progress (refreshes itself)."""
    account = await _account(request)
    if account is None:
        raise web.HTTPSeeOther("/dashboard/login")
    rows = await db.list_page(request.app["pool"], account["id"], status=None, channel=None, after=None, limit=100)
    counts = await db.delivery_counts(request.app["pool"], [r["id"] for r in rows])
    items = [{"row": r, "results": _folded(r, counts.get(r["id"]))} for r in rows]
    return _page("campaigns.html", account=account, items=items)


async def campaign_page(request: web.Request) -> web.Response:
    """`GET /dashboard/campaigns/{id}`: results, progress, runs, conversations and the buttons."""
    account = await _account(request)
    if account is None:
        raise web.HTTPSeeOther("/dashboard/login")
    pool = request.app["pool"]
    row = await db.get(pool, account["id"], request.match_info["id"])
    if row is None:
        raise web.HTTPNotFound(text="No such campaign.")
    counts = (await db.delivery_counts(pool, [row["id"]])).get(row["id"])
    deliveries = await db.deliveries_page(pool, row["id"], state=None, after=None, limit=50)
    conversations: dict[str, list[Any]] = {}
    for message in await pool.fetch(_MESSAGES, row["id"]):
        who = message["phone"] or message["email"]
        conversations.setdefault(who, []).append(message)
    return _page(
        "campaign.html",
        account=account,
        row=row,
        results=_folded(row, counts),
        runs=await db.runs(pool, row["id"]),
        deliveries=deliveries,
        conversations=conversations,
        actions=ACTIONS.get(row["status"], ()),
        error=request.query.get("error"),
    )


async def campaign_action(request: web.Request) -> web.Response:
    """`POST /dashboard/campaigns/{id}/{action}`: the button; back to the page (with the reason on failure)."""
    account = await _account(request)
    if account is None:
        raise web.HTTPSeeOther("/dashboard/login")
    campaign_id, action = request.match_info["id"], request.match_info["action"]
    target = f"/dashboard/campaigns/{campaign_id}"
    try:
        defaults = platform_senders(request.app["settings"])
        await apply_action(request.app["pool"], account, campaign_id, action, defaults)  # type: ignore[arg-type]
    except AppError as exc:
        raise web.HTTPSeeOther(target + "?" + urlencode({"error": exc.message})) from exc
    raise web.HTTPSeeOther(target)


async def _redirect(location: str) -> web.Response:
    raise web.HTTPFound(location)


def add_routes(app: web.Application) -> None:
    """The dashboard's pages."""
    r = app.router
    r.add_get("/", lambda _: _redirect("/dashboard"))
    r.add_get("/dashboard/login", login_form)
    r.add_post("/dashboard/login", login)
    r.add_post("/dashboard/logout", logout)
    r.add_get("/dashboard", campaigns_page)
    r.add_get("/dashboard/campaigns/{id}", campaign_page)
    r.add_post("/dashboard/campaigns/{id}/{action:launch|pause|resume|cancel}", campaign_action)
