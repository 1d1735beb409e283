"""Creating and editing a campaign from the browser, with a live preview of its message for a
chosen contact (missing variables named). The form becomes the API's own request body, so the
API's checks run and its errors show next to the fields."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.api.dashboard import forms
from services.api.dashboard.web import account_of, field_errors, page, render
from services.api.schemas import CampaignCreate, CampaignPatch, parse
from services.api.usecases import campaigns as usecase
from services.api.usecases import templates as templates_usecase
from services.api.usecases.templates import PreviewIn
from shared.db import activity, senders
from shared.db import campaigns as campaigns_db
from shared.db import contacts as contacts_db
from shared.db import templates as templates_db
from shared.domain.templating import contact_context
from shared.domain.zones import zone_names
from shared.errors import AppError
from shared.settings import breaker_defaults

#: Choices a select offers at most (agents, groups, templates, contacts to preview for).
CHOICES = 200
ZONES = sorted(zone_names())


async def _choices(request: web.Request) -> dict[str, Any]:
    pool, account_id = request.app["pool"], account_of(request)["id"]
    settings = request.app["settings"]
    agents = await campaigns_db.agents_page(pool, account_id, None, CHOICES)
    templates = await templates_db.page(pool, account_id, None, None, CHOICES)
    return {
        "agents": agents,
        "agent_options": [(a["id"], a["name"]) for a in agents],
        "template_options": [(t["id"], f"{t['name']} ({t['channel']})") for t in templates],
        "groups": await contacts_db.list_groups(pool, account_id, after=None, limit=CHOICES),
        "senders": await senders.list_all(pool, account_id),
        "default_senders": (settings.default_from_number, settings.default_from_email),
        "contacts": await contacts_db.list_page(pool, account_id, limit=CHOICES),
        "zones": ZONES,
        "days": forms.DAYS,
        "breaker": breaker_defaults(settings),
    }


async def _form(
    request: web.Request,
    *,
    row: asyncpg.Record | None,
    values: dict[str, Any],
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    preview = await _preview(request, values) if values.get("preview_contact") else None
    return page(
        request,
        "campaign_form.html",
        status=status,
        row=row,
        values=values,
        errors=errors or {},
        preview=preview,
        **await _choices(request),
    )


async def new_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/new`."""
    return await _form(request, row=None, values=forms.campaign_values(None, []))


async def edit_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}/edit` (a draft)."""
    pool = request.app["pool"]
    row, _counts = await usecase.load(pool, account_of(request)["id"], request.match_info["id"])
    inline = await activity.inline_addresses(pool, row["id"], row["channel"])
    return await _form(request, row=row, values=forms.campaign_values(row, inline))


async def save(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/campaigns/new` and `/dashboard/campaigns/{id}/edit`: saved as a draft, then
    its page (with the dry run and Launch); or the form again with the API's errors by field."""
    form = await request.post()
    values = forms.submitted_values(form)
    values["preview_contact"] = form.get("preview_contact")
    campaign_id = request.match_info.get("id")
    if form.get("intent") == "preview":  # without the page's script: the form again, with the preview
        found = await usecase.load(request.app["pool"], account_of(request)["id"], campaign_id) if campaign_id else None
        return await _form(request, row=found[0] if found else None, values=values)
    pool, account, settings = request.app["pool"], account_of(request), request.app["settings"]
    row: asyncpg.Record | None = None
    try:
        if campaign_id is None:
            body = parse(CampaignCreate, forms.campaign_request(form, editing=False))
            row, _warnings, _missing = await usecase.create(pool, account, settings, body)
        else:
            row, _counts = await usecase.load(pool, account["id"], campaign_id)
            patch = parse(CampaignPatch, forms.campaign_request(form, editing=True))
            row, _warnings = await usecase.update_draft(pool, account, settings, campaign_id, patch)
    except AppError as exc:
        if exc.status == 404 and not exc.details:
            raise
        return await _form(
            request, row=row, values=values, errors=field_errors(exc, forms.campaign_field), status=exc.status
        )
    raise web.HTTPSeeOther(f"/dashboard/campaigns/{row['id']}")  # saved: a row


async def preview(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/preview` (the form's script, as the form is typed): the preview's HTML."""
    form = await request.post()
    values = {name: form.get(name) for name in (*forms.form_names(), "preview_contact")}
    return web.Response(text=await _preview(request, values), content_type="text/html")


async def _preview(request: web.Request, values: dict[str, Any]) -> str:
    """The message rendered for the chosen contact as the API's preview renders it: each part, and
    the variables the contact lacks; or why it cannot be rendered."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    parts: dict[str, str | None] = {
        "subject": values.get("subject") or None,
        "body": values.get("message_template") or None,
        "html": values.get("html_template") or None,
    }
    error = None
    result: dict[str, Any] | None = None
    try:
        if values.get("template_id"):
            template = await templates_usecase.get(pool, account_id, str(values["template_id"]))
            parts = {
                "subject": parts["subject"] or template["subject"],
                "body": parts["body"] or template["body"],
                "html": parts["html"] or template["html"],
            }
        if values.get("channel") != "email":
            parts = {"body": parts["body"]}
        body = PreviewIn(contact_id=str(values.get("preview_contact") or ""), agent_id=values.get("agent_id") or None)
        if body.contact_id:
            contact, agent_name = await templates_usecase.preview_contact(pool, account_id, body)
            result = templates_usecase.render_parts(parts, contact_context(contact, agent_name))
    except AppError as exc:
        error = exc.message
    return render(request, "_preview.html", result=result, error=error, parts=parts)
