"""`/templates`: reusable message templates, and previews of them for a contact."""

from __future__ import annotations

from typing import Any, Literal, cast

import asyncpg
from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from services.api.handlers.common import decode_cursor, encode_cursor, iso, page_limit, read_model
from services.api.schemas import pydantic_details
from shared.db import campaigns as campaigns_db
from shared.db import templates as db
from shared.domain.templating import (
    MissingVariable,
    TemplateError,
    compile_template,
    contact_context,
    render,
)
from shared.errors import Invalid, NotFound
from shared.web import json_response


class TemplateIn(BaseModel):
    """`POST /templates` (and `PATCH`, every field optional there)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    channel: Literal["sms", "email", "voice"] = Field(validation_alias=AliasChoices("channel", "type"))
    body: str | None = Field(default=None, validation_alias=AliasChoices("body", "message_template", "text"))
    subject: str | None = None
    html: str | None = Field(default=None, validation_alias=AliasChoices("html", "html_template"))


class TemplatePatch(BaseModel):
    """`PATCH /templates/{id}`: any of the name and texts (the channel stays)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    #: Accepted only as the template's own: a template's channel does not change.
    channel: str | None = Field(default=None, validation_alias=AliasChoices("channel", "type"))
    body: str | None = Field(default=None, validation_alias=AliasChoices("body", "message_template", "text"))
    subject: str | None = None
    html: str | None = Field(default=None, validation_alias=AliasChoices("html", "html_template"))


class PreviewIn(BaseModel):
    """`POST /templates/{id}/preview`: a stored contact, or contact fields inline."""

    model_config = ConfigDict(extra="ignore")

    contact_id: str | None = None
    contact: dict[str, Any] | None = None
    agent_id: str | None = None
    agent_name: str | None = None


def check_texts(channel: str, body: str | None, subject: str | None, html: str | None) -> None:
    """422 naming every text that does not compile (with its line) or that the channel needs."""
    errors = []
    for name, source in (("body", body), ("subject", subject), ("html", html)):
        if source:
            try:
                compile_template(source, name == "html")
            except TemplateError as exc:
                errors.append({"field": name, "reason": str(exc)})
    if channel in ("sms", "voice") and not body:
        errors.append({"field": "body", "reason": f"required for a {channel} template"})
    if channel == "email":
        if not subject:
            errors.append({"field": "subject", "reason": "required for an email template"})
        if not body and not html:
            errors.append({"field": "body", "reason": "an email template needs a text body or html"})
    if errors:
        raise Invalid("the template is not valid", details=errors)


def template_body(row: asyncpg.Record) -> dict[str, Any]:
    """A template as the API shows it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "channel": row["channel"],
        "body": row["body"],
        "subject": row["subject"],
        "html": row["html"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def _get(request: web.Request) -> asyncpg.Record:
    row = await db.get(request.app["pool"], request["account"]["id"], request.match_info["id"])
    if row is None:
        raise NotFound(f"template {request.match_info['id']!r} not found")
    return row


async def create_template(request: web.Request) -> web.Response:
    """`POST /templates` → 201."""
    body = await read_model(request, TemplateIn)
    check_texts(body.channel, body.body, body.subject, body.html)
    row = await db.insert(request.app["pool"], request["account"]["id"], body.model_dump())
    return json_response(template_body(row), status=201)


async def get_template(request: web.Request) -> web.Response:
    """`GET /templates/{id}`."""
    return json_response(template_body(await _get(request)))


async def list_templates(request: web.Request) -> web.Response:
    """`GET /templates?channel=&limit=&cursor=`."""
    limit = page_limit(request)
    rows = await db.page(
        request.app["pool"], request["account"]["id"], request.query.get("channel"), decode_cursor(request), limit + 1
    )
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return json_response(
        {
            "data": [template_body(r) for r in page],
            "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
        }
    )


async def update_template(request: web.Request) -> web.Response:
    """`PATCH /templates/{id}`: change its name or texts (the channel stays)."""
    row = await _get(request)
    patch = await read_model(request, TemplatePatch)
    if patch.channel is not None and patch.channel != row["channel"]:
        raise Invalid(
            "a template's channel does not change",
            details=[{"field": "channel", "reason": f"this is a {row['channel']} template: create a new one"}],
        )
    data = {k: row[k] for k in ("name", "channel", "body", "subject", "html")}
    data.update(
        {k: getattr(patch, k) for k in patch.model_fields_set - {"channel"} if k != "name" or patch.name is not None}
    )
    try:
        merged = TemplateIn.model_validate(data)
    except ValidationError as exc:
        raise Invalid("the template is not valid", details=pydantic_details(exc)) from exc
    check_texts(merged.channel, merged.body, merged.subject, merged.html)
    updated = await db.update(request.app["pool"], request["account"]["id"], row["id"], merged.model_dump())
    return json_response(template_body(cast(asyncpg.Record, updated)))  # found by `_get` above


async def delete_template(request: web.Request) -> web.Response:
    """`DELETE /templates/{id}` → 204."""
    if not await db.delete(request.app["pool"], request["account"]["id"], request.match_info["id"]):
        raise NotFound(f"template {request.match_info['id']!r} not found")
    return web.Response(status=204)


async def preview_template(request: web.Request) -> web.Response:
    """`POST /templates/{id}/preview`: the template rendered for one contact, and what it lacks."""
    row = await _get(request)
    body = await read_model(request, PreviewIn)
    contact = await resolve_contact(request, body)
    agent_name = body.agent_name
    if body.agent_id:
        agent = await campaigns_db.get_agent(request.app["pool"], request["account"]["id"], body.agent_id)
        if agent is None:
            raise NotFound(f"agent {body.agent_id!r} not found")
        agent_name = agent["name"]
    return json_response(
        render_parts(
            {"body": row["body"], "subject": row["subject"], "html": row["html"]}, contact_context(contact, agent_name)
        )
    )


async def resolve_contact(request: web.Request, body: PreviewIn) -> dict[str, Any]:
    """The contact a preview renders for: a stored one (404 if not the account's) or inline fields."""
    if body.contact_id:
        found = await request.app["pool"].fetchrow(
            "SELECT * FROM contacts WHERE account_id = $1 AND id = $2", request["account"]["id"], body.contact_id
        )
        if found is None:
            raise NotFound(f"contact {body.contact_id!r} not found")
        return dict(found)
    fields = dict(body.contact or {})
    builtin = {k: fields.pop(k, None) for k in ("first_name", "last_name", "email", "phone", "company")}
    return {**builtin, "metadata": {**fields.pop("metadata", {}), **fields}}


def render_parts(parts: dict[str, str | None], context: dict[str, Any]) -> dict[str, Any]:
    """Render each present part; a part lacking a variable is null and the variable is listed."""
    out: dict[str, Any] = {}
    missing: list[str] = []
    for name, source in parts.items():
        if not source:
            out[name] = None
            continue
        try:
            out[name] = render(source, context, html=name == "html")
        except MissingVariable as exc:
            out[name] = None
            missing.append(exc.name)
        except TemplateError as exc:
            raise Invalid(str(exc), details=[{"field": name, "reason": str(exc)}]) from exc
    return {**out, "missing_variables": sorted(set(missing))}
