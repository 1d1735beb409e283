"""The dashboard's webhook endpoints page: list, add (the secret shown once), change the URL and
events, turn on and off, delete, and each endpoint's recent attempts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.dashboard.web import account_of, field_errors, page
from services.api.schemas import parse
from services.api.usecases import webhook_endpoints as usecase
from services.api.usecases.webhook_endpoints import EndpointIn, EndpointPatch
from shared.db import webhooks as db
from shared.domain.webhooks import ALL, EVENTS
from shared.errors import AppError

#: Endpoints shown, and attempts shown for each.
PAGE = 50
ATTEMPTS = 5


async def webhooks_page(
    request: web.Request,
    errors: dict[str, list[str]] | None = None,
    secret: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> web.StreamResponse:
    """`GET /dashboard/webhooks`."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    rows = await db.endpoints_page(pool, account_id, None, PAGE)
    attempts = {r["id"]: await db.attempts(pool, r["id"], None, ATTEMPTS) for r in rows}
    return page(
        request,
        "webhooks.html",
        status=422 if errors else 200,
        endpoints=rows,
        attempts=attempts,
        events=EVENTS,
        errors=errors or {},
        secret=secret,
        form=form or {},
    )


async def change_webhooks(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/webhooks` with `intent` add, update (`id`, `url`, `events`), enable,
    disable or delete (`id`)."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    form = await request.post()
    intent = str(form.get("intent") or "add")
    endpoint_id = str(form.get("id") or "")
    url = str(form.get("url") or "").strip()
    events = [str(e) for e in form.getall("events", [])]
    try:
        if intent == "add":
            row, secret = await usecase.create(
                pool, account_id, parse(EndpointIn, {"url": url, "events": events or [ALL]}), request.app["outbound"]
            )
            return await webhooks_page(request, secret={"id": row["id"], "url": row["url"], "secret": secret})
        if intent == "delete":
            await usecase.delete(pool, account_id, endpoint_id)
        else:
            fields: dict[str, Any] = {"enabled": intent == "enable"} if intent in ("enable", "disable") else {}
            if intent == "update":
                fields = {"url": url, "events": events or [ALL]}
            await usecase.update(pool, account_id, endpoint_id, parse(EndpointPatch, fields), request.app["outbound"])
    except AppError as exc:
        return await webhooks_page(request, field_errors(exc), form={"url": url, "events": events, "id": endpoint_id})
    raise web.HTTPSeeOther("/dashboard/webhooks")
