"""`/templates`: reusable message templates, and previews of them for a contact."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import asyncpg
from aiohttp import web

from services.api.handlers.common import decode_cursor, iso, page_limit, query_choice, read_model
from services.api.paging import newest_first
from services.api.schemas import Channel
from services.api.usecases import templates as usecase
from services.api.usecases.templates import PreviewIn, TemplateIn, TemplatePatch
from shared.db import templates as db
from shared.domain.pricing import sms_segments
from shared.domain.sms import message_too_long
from shared.domain.templating import contact_context
from shared.errors import NotFound
from shared.web import json_response

__all__ = ["PreviewIn", "TemplateIn", "TemplatePatch"]


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


async def create_template(request: web.Request) -> web.Response:
    """`POST /templates` → 201."""
    body = await read_model(request, TemplateIn)
    row = await usecase.create(request.app["pool"], request["account"]["id"], body)
    return json_response(template_body(row), status=201)


async def get_template(request: web.Request) -> web.Response:
    """`GET /templates/{id}`."""
    return json_response(
        template_body(await usecase.get(request.app["pool"], request["account"]["id"], request.match_info["id"]))
    )


async def list_templates(request: web.Request) -> web.Response:
    """`GET /templates?channel=&limit=&cursor=`."""
    limit = page_limit(request)
    channel = query_choice(request, "channel", get_args(Channel))
    rows = await db.page(request.app["pool"], request["account"]["id"], channel, decode_cursor(request), limit + 1)
    return json_response(newest_first(rows, limit, template_body))


async def update_template(request: web.Request) -> web.Response:
    """`PATCH /templates/{id}`: change its name or texts (the channel stays)."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    await usecase.get(pool, account_id, request.match_info["id"])  # 404 before reading the body
    patch = await read_model(request, TemplatePatch)
    return json_response(template_body(await usecase.update(pool, account_id, request.match_info["id"], patch)))


async def delete_template(request: web.Request) -> web.Response:
    """`DELETE /templates/{id}` → 204."""
    if not await db.delete(request.app["pool"], request["account"]["id"], request.match_info["id"]):
        raise NotFound(f"template {request.match_info['id']!r} not found")
    return web.Response(status=204)


async def preview_template(request: web.Request) -> web.Response:
    """`POST /templates/{id}/preview`: the template rendered for one contact, and what it lacks; for
    an SMS template, its segments and why it cannot go (too long), if so."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    row = await usecase.get(pool, account_id, request.match_info["id"])
    body = await read_model(request, PreviewIn)
    contact, agent_name = await usecase.preview_contact(pool, account_id, body)
    parts = {"body": row["body"], "subject": row["subject"], "html": row["html"]}
    # off the event loop: a render may take its whole budget (MAX_SECONDS), and the API answers meanwhile
    rendered = await asyncio.to_thread(usecase.render_parts, parts, contact_context(contact, agent_name))
    # what an SMS costs, and whether it can go: known only of its whole text (null otherwise, and for
    # another channel's template)
    rendered |= {"segments": None, "error": None}
    if row["channel"] == "sms" and rendered["body"] is not None and not rendered["missing_variables"]:
        rendered |= {"segments": sms_segments(rendered["body"]), "error": message_too_long(rendered["body"])}
    return json_response(rendered)
