"""`/campaigns`: create, read, list, change and delete a draft, launch/pause/resume/cancel, results."""

from __future__ import annotations

from typing import Any, get_args

import asyncpg
from aiohttp import web

from services.api.handlers.common import decode_cursor, iso, page_limit, query_address, query_choice, read_model
from services.api.paging import decode_id_cursor, decode_position, encode_position, newest_first
from services.api.schemas import CampaignCreate, CampaignPatch, Channel
from services.api.usecases import campaigns, exports
from shared.db import campaigns as db
from shared.domain import contacts
from shared.domain.breaker import Thresholds, thresholds
from shared.domain.campaign import Action, Status
from shared.domain.deliveries import STATES
from shared.domain.results import results
from shared.errors import Invalid, NotFound
from shared.settings import breaker_defaults
from shared.web import download, json_response


def campaign_body(row: asyncpg.Record, counts: asyncpg.Record | None, defaults: Thresholds) -> dict[str, Any]:
    """A campaign in the seed's response shape, with its other settings beside (`defaults`: the
    circuit breaker's, for a campaign that sets none)."""
    # "completed": deliveries finished without failing (sent, delivered, skipped as opted out…)
    done = 0 if counts is None else counts["total"] - counts["pending"] - counts["failed"] - counts["cancelled"]
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "type": row["channel"],
        "channel": row["channel"],
        "agent_id": row["agent_id"],
        "total_contacts": counts["total"] if counts else row["total_contacts"],
        "completed": done,
        "failed": counts["failed"] if counts else 0,
        "scheduled_at": iso(row["scheduled_at"] or row["scheduled_wall"]),
        "timezone": row["timezone"],
        "sending_window": row["sending_window"],
        "recurrence": row["recurrence"],
        "message_template": row["message_template"],
        "subject": row["subject_template"],
        "html_template": row["html_template"],
        "template_id": row["template_id"],
        "contact_group_ids": list(row["group_ids"]),
        "max_concurrent": row["max_concurrent"],
        "reserved": str(row["reserved"]),
        "max_retries": row["max_retries"],
        "retry_interval": row["retry_interval"],
        "from_number": row["from_number"],
        "voice": row["voice"],
        "status_reason": row["status_reason"],
        # why a campaign ended `failed`: no delivery of a run succeeded, or a run could not be funded
        "failure_reason": row["status_reason"] if row["status"] == "failed" else None,
        "circuit_breaker": thresholds(row["circuit_breaker"], defaults).as_dict(),
        # why the circuit breaker paused it: {"code", "value", "threshold", "window"} (None otherwise)
        "paused_reason": row["paused_reason"] if row["status"] == "paused" else None,
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "launched_at": iso(row["launched_at"]),
        "completed_at": iso(row["completed_at"]),
    }


async def _load(request: web.Request) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    return await campaigns.load(request.app["pool"], request["account"]["id"], request.match_info["id"])


async def create_campaign(request: web.Request) -> web.Response:
    """`POST /campaigns` → 201 with the draft (or launched, with `"status": "scheduled"`, and then
    `missing_variables` as a launch answers)."""
    body = await read_model(request, CampaignCreate)
    pool, settings = request.app["pool"], request.app["settings"]
    row, warnings, missing = await campaigns.create(pool, request["account"], settings, body)
    body_out = {**campaign_body(row, None, breaker_defaults(settings)), "warnings": warnings}
    return json_response(body_out if missing is None else {**body_out, "missing_variables": missing}, status=201)


async def update_campaign(request: web.Request) -> web.Response:
    """`PATCH /campaigns/{id}` (a draft; 409 otherwise): the fields given replace the campaign's,
    checked as a create checks them (404 and 409 before the body is read: its contacts are
    checked for the campaign's channel)."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    channel = await campaigns.draft_channel(pool, account_id, request.match_info["id"])
    patch = await read_model(request, CampaignPatch, channel)
    row, warnings = await campaigns.update_draft(
        pool, request["account"], request.app["settings"], request.match_info["id"], patch
    )
    body = campaign_body(row, None, breaker_defaults(request.app["settings"]))
    return json_response({**body, "warnings": warnings})


async def delete_campaign(request: web.Request) -> web.Response:
    """`DELETE /campaigns/{id}` (a draft; 409 otherwise: cancel a launched one) → 204."""
    await campaigns.delete_draft(request.app["pool"], request["account"]["id"], request.match_info["id"])
    return web.Response(status=204)


async def get_campaign(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}`."""
    row, counts = await _load(request)
    return json_response(campaign_body(row, counts, breaker_defaults(request.app["settings"])))


async def list_campaigns(request: web.Request) -> web.Response:
    """`GET /campaigns?status=&channel=&limit=&cursor=` → `{"data": [...], "next_cursor": …}`."""
    limit = page_limit(request)
    status = query_choice(request, "status", get_args(Status))
    channel = query_choice(request, "channel", get_args(Channel)) or query_choice(request, "type", get_args(Channel))
    pool = request.app["pool"]
    rows = await db.list_page(
        pool,
        request["account"]["id"],
        status=status,
        channel=channel,
        after=decode_cursor(request),
        limit=limit + 1,
    )
    counts = await db.delivery_counts(pool, [r["id"] for r in rows[:limit]])
    defaults = breaker_defaults(request.app["settings"])
    return json_response(newest_first(rows, limit, lambda r: campaign_body(r, counts.get(r["id"]), defaults)))


async def campaign_action(request: web.Request) -> web.Response:
    """`POST /campaigns/{id}/launch|pause|resume|cancel`; 409 saying why when the state forbids it."""
    action: Action = request.path.rsplit("/", 1)[-1]  # type: ignore[assignment]
    defaults = campaigns.platform_senders(request.app["settings"])
    extra = await campaigns.apply_action(
        request.app["pool"], request["account"], request.match_info["id"], action, defaults
    )
    row, counts = await _load(request)
    return json_response({**campaign_body(row, counts, breaker_defaults(request.app["settings"])), **extra})


async def campaign_results(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/results[?run=N]` in the seed's shape, straight from the deliveries
    (every run together, or run N of a recurring campaign)."""
    row, counts = await _load(request)
    if "run" in request.query:
        run = await _run(request, row["id"], request.query["run"])
        counts = (await db.delivery_counts(request.app["pool"], [row["id"]], run["id"])).get(row["id"])
        body = results(row["id"], row["status"], campaigns.fold_run(row, run, counts))
        return json_response({**body, "run": run["seq"], "run_status": run["status"]})
    return json_response(results(row["id"], row["status"], campaigns.fold(row, counts)))


async def _run(request: web.Request, campaign_id: str, seq: str) -> asyncpg.Record:
    if not (seq.isascii() and seq.isdigit() and seq.lstrip("0")):  # (0 is no run: they count from 1)
        raise Invalid(f"run {seq!r} is not a run number", details=[{"field": "run", "reason": "a run's number: 1, 2…"}])
    found = [r for r in await db.runs(request.app["pool"], campaign_id) if str(r["seq"]) == seq]
    if not found:
        raise NotFound(f"campaign {campaign_id!r} has no run {seq!r}")
    return found[0]


async def campaign_runs(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/runs?limit=&cursor=`: each run (one per occurrence, in order) with its
    own results → `{"data": [...], "next_cursor": …}`."""
    limit = page_limit(request)
    after = decode_position(request)
    row, _ = await _load(request)
    pool = request.app["pool"]
    rows = await db.runs_page(pool, row["id"], after, limit + 1)
    data = []
    for run in rows[:limit]:
        counts = (await db.delivery_counts(pool, [row["id"]], run["id"])).get(row["id"])
        folded = campaigns.fold_run(row, run, counts)
        data.append(
            {
                "run": run["seq"],
                "id": run["id"],
                "status": run["status"],
                "occurs_at": iso(campaigns.occurs_at(row, run)),
                "completed_at": iso(run["completed_at"]),
                "results": results(row["id"], run["status"], folded),
            }
        )
    next_cursor = encode_position(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return json_response({"data": data, "next_cursor": next_cursor})


def _state(request: web.Request) -> str | None:
    """`?state=`: one of the delivery states; given empty, every state."""
    return query_choice(request, "state", STATES) if request.query.get("state") else None


def _address(request: web.Request) -> str | None:
    given = query_address(request, "to")
    if not given:
        return None
    field = "email" if "@" in given else "phone"
    checked, errors = contacts.check_fields({field: given}, None)
    if errors:
        raise Invalid(f"bad to {given!r}", details=[{"field": "to", "reason": e["reason"]} for e in errors])
    address: str = checked[field]
    return address


async def campaign_deliveries_csv(request: web.Request) -> web.StreamResponse:
    """`GET /campaigns/{id}/deliveries.csv?state=&run=`: every delivery (of one state, of run N) as
    CSV, with its contact's fields, streamed."""
    row, _ = await _load(request)
    state = _state(request)
    run = (await _run(request, row["id"], request.query["run"]))["id"] if "run" in request.query else None
    rows = exports.deliveries_csv(request.app["pool"], row["id"], state=state, run_id=run)
    return await download(request, rows, content_type="text/csv", filename=f"{row['id']}-deliveries.csv")


async def campaign_deliveries(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/deliveries?state=&to=&limit=&cursor=`: each contact's delivery, with how
    its send time was chosen (`plan_reason`: zone and its source, window, quiet-hours rule and
    version); `to`: only those to one phone (E.164, or as a contact's phone is written) or email."""
    row, _ = await _load(request)
    limit = page_limit(request)
    rows = await db.deliveries_page(
        request.app["pool"],
        row["id"],
        state=_state(request),
        after=decode_id_cursor(request, "delivery"),
        limit=limit + 1,
        to=_address(request),
    )
    page = rows[:limit]
    data = [
        {
            "id": d["id"],
            "run": d["seq"],
            "contact_id": d["contact_id"],
            "to": d["to_address"],
            "state": d["state"],
            "send_at": iso(d["send_at"]),
            "plan_reason": d["plan_reason"],
            "attempts": d["attempts"],
            "provider_id": d["provider_id"],
            "provider_status": d["provider_status"],
            "answered_by": d["answered_by"],
            "cost": None if d["cost"] is None else str(d["cost"]),
            "message": d["rendered"],
            "error": d["error"],
            "queued_at": iso(d["queued_at"]),
            "sent_at": iso(d["sent_at"]),
            "delivered_at": iso(d["delivered_at"]),
            "replied_at": iso(d["replied_at"]),
            "failed_at": iso(d["failed_at"]),
        }
        for d in page
    ]
    return json_response({"data": data, "next_cursor": page[-1]["id"] if len(rows) > limit else None})
