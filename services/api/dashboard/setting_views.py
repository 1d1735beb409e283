"""Templates, senders (with their verification state), agents and the account: list, create,
change, each through the API's own use case, its errors shown next to the fields."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from services.api.dashboard import forms
from services.api.dashboard.web import account_of, field_errors, page, render
from services.api.schemas import AgentCreate, AgentPatch, parse
from services.api.usecases import account as account_usecase
from services.api.usecases import agents as agents_usecase
from services.api.usecases import templates as templates_usecase
from services.api.usecases.account import AccountPatch, SenderIn, SenderPatch
from services.api.usecases.templates import PreviewIn, TemplateIn, TemplatePatch
from shared.db import accounts, senders
from shared.db import campaigns as campaigns_db
from shared.db import contacts as contacts_db
from shared.db import templates as templates_db
from shared.domain.templating import contact_context
from shared.errors import AppError, Invalid

#: Rows a list shows (templates, agents).
PAGE = 200


def _text(form: Any, name: str) -> str | None:
    value = str(form.get(name) or "").replace("\r\n", "\n").strip()
    return value or None


# Templates


async def templates_page(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/templates`."""
    rows = await templates_db.page(request.app["pool"], account_of(request)["id"], None, None, PAGE)
    return page(request, "templates.html", templates=rows)


async def _template_form(
    request: web.Request, row: Any, values: dict[str, Any], errors: dict[str, list[str]], status: int = 200
) -> web.StreamResponse:
    contacts = await contacts_db.list_page(request.app["pool"], account_of(request)["id"], limit=PAGE)
    return page(request, "template_form.html", status=status, row=row, values=values, errors=errors, contacts=contacts)


async def template_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/templates/new` and `/dashboard/templates/{id}`."""
    if "id" not in request.match_info:
        return await _template_form(request, None, {"channel": "sms"}, {})
    row = await templates_usecase.get(request.app["pool"], account_of(request)["id"], request.match_info["id"])
    return await _template_form(request, row, dict(row), {})


async def save_template(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/templates/new` and `/dashboard/templates/{id}`."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    form = await request.post()
    data = {name: _text(form, name) for name in ("name", "channel", "body", "subject", "html")}
    row = None
    try:
        if "id" in request.match_info:
            row = await templates_usecase.get(pool, account_id, request.match_info["id"])
            data.pop("channel")
            saved = await templates_usecase.update(pool, account_id, row["id"], parse(TemplatePatch, data))
        else:
            saved = await templates_usecase.create(pool, account_id, parse(TemplateIn, data))
    except AppError as exc:
        values = {**(dict(row) if row else {}), **{k: v for k, v in data.items() if k in form}}
        return await _template_form(request, row, values, field_errors(exc), exc.status)
    raise web.HTTPSeeOther(f"/dashboard/templates/{saved['id']}")


async def preview_template(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/templates/preview` (the form's script): the texts rendered for a contact."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    form = await request.post()
    parts = {name: _text(form, name) for name in ("subject", "body", "html")}
    result, error = None, None
    try:
        contact_id = _text(form, "preview_contact")
        if contact_id:
            contact, agent_name = await templates_usecase.preview_contact(
                pool, account_id, PreviewIn(contact_id=contact_id)
            )
            result = templates_usecase.render_parts(parts, contact_context(contact, agent_name))
    except AppError as exc:
        error = exc.message
    return web.Response(
        text=render(request, "_preview.html", result=result, error=error, parts=parts), content_type="text/html"
    )


# Senders


async def senders_page(
    request: web.Request, errors: dict[str, list[str]] | None = None, values: dict[str, Any] | None = None
) -> web.StreamResponse:
    """`GET /dashboard/senders`: each sender and whether it is verified (with a refused add's
    errors, the address typed in its field; with a refused rate's, the rate typed in the field of
    its sender, `rate_of`)."""
    rows = await senders.list_all(request.app["pool"], account_of(request)["id"])
    settings = request.app["settings"]
    return page(
        request,
        "senders.html",
        status=422 if errors else 200,
        senders=rows,
        errors=errors or {},
        values=values or {},
        defaults=(settings.default_from_number, settings.default_from_email),
    )


async def change_senders(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/senders` with `intent` add (an `address`), remove (an `address`) or rate
    (an `address` and its `max_per_second`)."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    form = await request.post()
    address = _text(form, "address")
    try:
        if form.get("intent") == "remove":
            await account_usecase.delete_sender(pool, account_id, address or "")
        elif form.get("intent") == "rate":
            patch = parse(SenderPatch, {"max_per_second": forms.decimal(form, "max_per_second")})
            await account_usecase.set_sender_rate(pool, account_id, address or "", patch)
        else:
            await account_usecase.add_sender(
                pool, account_id, parse(SenderIn, {"address": address}), request.app["senders"]
            )
    except AppError as exc:
        errors = field_errors(exc)
        reasons = [reason for found in errors.values() for reason in found]
        intent = str(form.get("intent") or "add")
        if intent == "add":
            return await senders_page(request, {"address": reasons}, {"address": form.get("address")})
        if intent == "rate" and "max_per_second" in errors:
            typed = {"rate_of": address, "max_per_second": form.get("max_per_second")}
            return await senders_page(request, {"max_per_second": reasons}, typed)
        return await senders_page(request, {"form": reasons})
    raise web.HTTPSeeOther("/dashboard/senders")


# Agents


async def agents_page(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/agents`."""
    rows = await campaigns_db.agents_page(request.app["pool"], account_of(request)["id"], None, PAGE)
    return page(request, "agents.html", agents=rows)


def _agent_values(row: Any) -> dict[str, Any]:
    values = {k: row[k] for k in ("name", "instructions", "opening_message", "mode")}
    secret = {k: "" for k in ("api_key", "secret", "token") if k in (row["settings"] or {})}
    values["settings"] = json.dumps({**(row["settings"] or {}), **secret}, indent=2)
    return values


async def agent_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/agents/new` and `/dashboard/agents/{id}`."""
    if "id" not in request.match_info:
        values = {"mode": "rules", "settings": '{\n  "rules": [],\n  "default_reply": ""\n}'}
        return page(request, "agent_form.html", row=None, values=values, errors={})
    row = await agents_usecase.get(request.app["pool"], account_of(request)["id"], request.match_info["id"])
    return page(request, "agent_form.html", row=row, values=_agent_values(row), errors={})


async def save_agent(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/agents/new` and `/dashboard/agents/{id}` (settings as JSON; a secret left
    empty keeps the one stored)."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    form = await request.post()
    data, errors = forms.agent_request(form)
    row = await agents_usecase.get(pool, account_id, request.match_info["id"]) if "id" in request.match_info else None
    try:
        if errors:
            raise Invalid("the agent is not valid", details=[{"field": "settings", "reason": errors["settings"][0]}])
        if row is not None:
            kept = {k: v for k, v in (row["settings"] or {}).items() if k in ("api_key", "secret", "token")}
            data["settings"] = {**kept, **{k: v for k, v in data["settings"].items() if v != "" or k not in kept}}
            saved = await agents_usecase.update(
                pool, account_id, row["id"], parse(AgentPatch, data), request.app["outbound"]
            )
        else:
            saved = await agents_usecase.create(pool, account_id, parse(AgentCreate, data), request.app["outbound"])
    except AppError as exc:
        values = {k: form.get(k) for k in ("name", "instructions", "opening_message", "mode", "settings")}
        return page(request, "agent_form.html", status=exc.status, row=row, values=values, errors=field_errors(exc))
    raise web.HTTPSeeOther(f"/dashboard/agents/{saved['id']}")


# The account


async def account_page(
    request: web.Request,
    errors: dict[str, list[str]] | None = None,
    *,
    values: dict[str, Any] | None = None,
    key_errors: dict[str, list[str]] | None = None,
    new_key: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    """`GET /dashboard/account`: balance, what launched campaigns hold, prices, defaults (the
    saved ones, or with a refused change's errors what was typed), and the API keys (prefixes and
    times; a new key is shown once, on the page that issued it)."""
    pool, account = request.app["pool"], account_of(request)
    view = await account_usecase.view(pool, account["id"])
    keys = await account_usecase.api_keys(pool, account["id"], account["api_key_hash"])
    return page(
        request,
        "account.html",
        status=422 if errors else status,
        view=view,
        values=values or {k: view[k] for k in ("default_timezone", "quiet_hours")},
        errors=errors or {},
        keys=keys,
        key_errors=key_errors or {},
        new_key=new_key,
    )


async def update_account(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/account`: the default time zone and the quiet-hours policy."""
    form = await request.post()
    data: dict[str, Any] = {"quiet_hours": form.get("quiet_hours") == "on"}
    if (zone := _text(form, "default_timezone")) is not None:  # (left empty: kept, as the API has no null for it)
        data["default_timezone"] = zone
    try:
        await account_usecase.update(request.app["pool"], account_of(request)["id"], parse(AccountPatch, data))
    except AppError as exc:
        typed = {"default_timezone": form.get("default_timezone"), "quiet_hours": data["quiet_hours"]}
        return await account_page(request, field_errors(exc), values=typed)
    raise web.HTTPSeeOther("/dashboard/account")


async def change_keys(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/account/keys` with `intent` create (the key shown this once) or revoke
    (`prefix`). Revoking the key this browser signed in with ends its session, so the next page
    is the sign-in form; the account's last live key is never revoked (409)."""
    pool, account = request.app["pool"], account_of(request)
    form = await request.post()
    if form.get("intent") == "create":
        return await account_page(request, new_key=await account_usecase.issue_key(pool, account["id"]), status=201)
    try:
        await account_usecase.revoke_key(pool, account["id"], str(form.get("prefix") or ""))
    except AppError as exc:
        return await account_page(request, key_errors={"form": [exc.message]}, status=exc.status)
    if await accounts.account_for_session(pool, request["session_token"]) is None:
        raise web.HTTPSeeOther("/dashboard/login")
    raise web.HTTPSeeOther("/dashboard/account")
