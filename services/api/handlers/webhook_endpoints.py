"""`/webhook-endpoints`: where an account's events are POSTed, signed, and what each attempt got."""

from __future__ import annotations

from aiohttp import web

from services.api.handlers.common import page_limit, read_model
from services.api.paging import BIGGEST_ID, decode_cursor, newest_first
from services.api.usecases import webhook_endpoints as usecase
from services.api.usecases.webhook_endpoints import EndpointIn, EndpointPatch
from shared.db import webhooks as db
from shared.domain.times import iso
from shared.errors import Invalid
from shared.web import json_response


async def create_endpoint(request: web.Request) -> web.Response:
    """`POST /webhook-endpoints` → 201 with the endpoint and its `secret` (shown this once)."""
    body = await read_model(request, EndpointIn)
    row, secret = await usecase.create(request.app["pool"], request["account"]["id"], body, request.app["outbound"])
    return json_response({**usecase.as_body(row), "secret": secret}, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    """`GET /webhook-endpoints?limit=&cursor=`, newest first."""
    limit = page_limit(request)
    rows = await db.endpoints_page(request.app["pool"], request["account"]["id"], decode_cursor(request), limit + 1)
    return json_response(newest_first(rows, limit, usecase.as_body))


async def get_endpoint(request: web.Request) -> web.Response:
    """`GET /webhook-endpoints/{id}`."""
    row = await usecase.get(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return json_response(usecase.as_body(row))


async def update_endpoint(request: web.Request) -> web.Response:
    """`PATCH /webhook-endpoints/{id}`: `url`, `events`, `enabled`."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    await usecase.get(pool, account_id, request.match_info["id"])  # 404 before reading the body
    patch = await read_model(request, EndpointPatch)
    row = await usecase.update(pool, account_id, request.match_info["id"], patch, request.app["outbound"])
    return json_response(usecase.as_body(row))


async def delete_endpoint(request: web.Request) -> web.Response:
    """`DELETE /webhook-endpoints/{id}` → 204."""
    await usecase.delete(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return web.Response(status=204)


async def list_attempts(request: web.Request) -> web.Response:
    """`GET /webhook-endpoints/{id}/attempts?limit=&cursor=`: the recent attempts, newest first."""
    limit = page_limit(request)
    raw = request.query.get("cursor")
    if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) <= BIGGEST_ID):
        raise Invalid("bad cursor", details=[{"field": "cursor", "reason": "not a cursor this list gave"}])
    rows = await usecase.attempts(
        request.app["pool"], request["account"]["id"], request.match_info["id"], int(raw) if raw else None, limit + 1
    )
    page = rows[:limit]
    return json_response(
        {
            "data": [
                {
                    "event_id": r["event_id"],
                    "event": r["type"],
                    "status_code": r["status_code"],
                    "error": r["error"],
                    "duration_ms": r["duration_ms"],
                    "at": iso(r["at"]),
                }
                for r in page
            ],
            "next_cursor": str(page[-1]["id"]) if len(rows) > limit else None,
        }
    )
