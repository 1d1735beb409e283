"""Message templates: create, change, and render for a contact (what it lacks listed)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, cast

import asyncpg
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from services.api.schemas import Name, pydantic_details, template_errors
from shared.db import campaigns as campaigns_db
from shared.db import contacts as contacts_db
from shared.db import templates as db
from shared.db.connection import Executor
from shared.domain.templating import MissingVariable, TemplateError, render, variables
from shared.errors import Invalid, NotFound


class TemplateIn(BaseModel):
    """`POST /templates` (and `PATCH`, every field optional there)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    channel: Literal["sms", "email", "voice"] = Field(validation_alias=AliasChoices("channel", "type"))
    body: str | None = Field(default=None, validation_alias=AliasChoices("body", "message_template", "text"))
    subject: str | None = None
    html: str | None = Field(default=None, validation_alias=AliasChoices("html", "html_template"))


class TemplatePatch(BaseModel):
    """`PATCH /templates/{id}`: any of the name and texts (the channel stays)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name | None = None
    #: Accepted only as the template's own: a template's channel does not change.
    channel: str | None = Field(default=None, validation_alias=AliasChoices("channel", "type"))
    body: str | None = Field(default=None, validation_alias=AliasChoices("body", "message_template", "text"))
    subject: str | None = None
    html: str | None = Field(default=None, validation_alias=AliasChoices("html", "html_template"))


class PreviewIn(BaseModel):
    """`POST /templates/{id}/preview`: a stored contact, or contact fields inline."""

    model_config = ConfigDict(extra="forbid")

    contact_id: str | None = None
    contact: dict[str, Any] | None = None
    agent_id: str | None = None
    agent_name: str | None = None


def check_texts(channel: str, body: str | None, subject: str | None, html: str | None) -> None:
    """422 naming every text that does not compile (with its line), that blows the render budget
    whatever the contact, that the channel needs, or that is longer than an SMS holds on its own
    text (an SMS template's body). It may take the render budget's time: call it off the event
    loop."""
    errors = [
        error
        for name, source in (("body", body), ("subject", subject), ("html", html))
        for error in template_errors(name, source, html=name == "html", sms=channel == "sms" and name == "body")
    ]
    if channel in ("sms", "voice") and not body:
        errors.append({"field": "body", "reason": f"required for a {channel} template"})
    if channel == "email":
        if not subject:
            errors.append({"field": "subject", "reason": "required for an email template"})
        if not body and not html:
            errors.append({"field": "body", "reason": "an email template needs a text body or html"})
    if errors:
        raise Invalid("the template is not valid", details=errors)


async def get(pool: Executor, account_id: str, template_id: str) -> asyncpg.Record:
    """One of the account's templates; NotFound otherwise."""
    row = await db.get(pool, account_id, template_id)
    if row is None:
        raise NotFound(f"template {template_id!r} not found")
    return row


async def create(pool: Executor, account_id: str, body: TemplateIn) -> asyncpg.Record:
    """A new template (422 naming every text that does not compile or that its channel needs)."""
    await asyncio.to_thread(check_texts, body.channel, body.body, body.subject, body.html)
    return await db.insert(pool, account_id, body.model_dump())


async def update(pool: Executor, account_id: str, template_id: str, patch: TemplatePatch) -> asyncpg.Record:
    """Change a template's name or texts (its channel stays)."""
    row = await get(pool, account_id, template_id)
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
    await asyncio.to_thread(check_texts, merged.channel, merged.body, merged.subject, merged.html)
    return cast(asyncpg.Record, await db.update(pool, account_id, row["id"], merged.model_dump()))  # found above


async def preview_contact(pool: Executor, account_id: str, body: PreviewIn) -> tuple[dict[str, Any], str | None]:
    """The contact a preview renders for (a stored one, NotFound if not the account's, or inline
    fields) and the agent name it reads."""
    if body.contact_id:
        found = await contacts_db.get(pool, account_id, body.contact_id)
        if found is None:
            raise NotFound(f"contact {body.contact_id!r} not found")
        contact: dict[str, Any] = dict(found)
    else:
        fields = dict(body.contact or {})
        builtin = {k: fields.pop(k, None) for k in ("first_name", "last_name", "email", "phone", "company")}
        contact = {**builtin, "metadata": {**fields.pop("metadata", {}), **fields}}
    agent_name = body.agent_name
    if body.agent_id:
        agent = await campaigns_db.get_agent(pool, account_id, body.agent_id)
        if agent is None:
            raise NotFound(f"agent {body.agent_id!r} not found")
        agent_name = agent["name"]
    return contact, agent_name


def render_parts(parts: dict[str, str | None], context: dict[str, Any]) -> dict[str, Any]:
    """Render each present part; a variable the contact lacks is listed, and its part rendered
    with the variable shown as written (`{{agent_name}}`), or null when even that fails (an
    attribute of it, say). An absent part is null."""
    out: dict[str, Any] = {}
    missing: list[str] = []
    for name, source in parts.items():
        if not source:
            out[name] = None
            continue
        try:
            out[name] = render(source, context, html=name == "html")
        except MissingVariable as exc:
            lacking = {exc.name, *(variables(source) - set(context))}  # every one, not only the first met
            missing += lacking
            out[name] = _with_placeholders(source, context, lacking, html=name == "html")
        except TemplateError as exc:
            raise Invalid(str(exc), details=[{"field": name, "reason": str(exc)}]) from exc
    return {**out, "missing_variables": sorted(set(missing))}


def _with_placeholders(source: str, context: dict[str, Any], lacking: set[str], html: bool) -> str | None:
    """`source` rendered with each lacking variable shown as written; None when it cannot be."""
    try:
        return render(source, {**context, **{v: "{{" + v + "}}" for v in lacking}}, html=html)
    except (MissingVariable, TemplateError):
        return None
