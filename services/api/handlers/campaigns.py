"""`/campaigns`: create, read, list, change and delete a draft, launch/pause/resume/cancel, results."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, cast, get_args

import asyncpg
import structlog
from aiohttp import web
from pydantic import ValidationError

from services.api.handlers.account import is_allowed_sender
from services.api.handlers.common import decode_cursor, encode_cursor, iso, page_limit, read_model
from services.api.schemas import CampaignCreate, CampaignPatch, Channel, normalize, patched, pydantic_details
from shared.bus import outbox
from shared.channels import SENDING_CHANNELS
from shared.db import balance
from shared.db import campaigns as db
from shared.db import templates as templates_db
from shared.db.connection import Connection
from shared.domain import pricing
from shared.domain.campaign import Action, InvalidTransition, Status, check_editable, transition
from shared.domain.results import Counts, results
from shared.domain.templating import variables
from shared.errors import Conflict, Invalid, NotFound, PaymentRequired
from shared.messages.campaign_events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignLaunched,
    CampaignPaused,
    CampaignResumed,
)
from shared.web import json_response

log = structlog.get_logger()


def campaign_body(row: asyncpg.Record, counts: asyncpg.Record | None) -> dict[str, Any]:
    """A campaign in the seed's response shape, with its other settings beside."""
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
        "template_id": row["template_id"],
        "contact_group_ids": list(row["group_ids"]),
        "max_concurrent": row["max_concurrent"],
        "reserved": str(row["reserved"]),
        "max_retries": row["max_retries"],
        "retry_interval": row["retry_interval"],
        "from_number": row["from_number"],
        "voice": row["voice"],
        "status_reason": row["status_reason"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "launched_at": iso(row["launched_at"]),
        "completed_at": iso(row["completed_at"]),
    }


async def _load(request: web.Request) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    pool = request.app["pool"]
    row = await db.get(pool, request["account"]["id"], request.match_info["id"])
    if row is None:
        raise NotFound(f"campaign {request.match_info['id']!r} not found")
    counts = (await db.delivery_counts(pool, [row["id"]])).get(row["id"])
    return row, counts


async def create_campaign(request: web.Request) -> web.Response:
    """`POST /campaigns` → 201 with the draft (or launched, with `"status": "scheduled"`)."""
    account = request["account"]
    spec = normalize(await read_model(request, CampaignCreate), account["default_timezone"])
    async with request.app["pool"].acquire() as conn, conn.transaction():
        await _check_references(conn, request, spec)
        campaign_id = await db.insert_campaign(conn, account["id"], spec)
        events: list[Any] = [CampaignCreated(account_id=account["id"], campaign_id=campaign_id, channel=spec.channel)]
        # The campaign was inserted above, in this transaction.
        if spec.launch:
            row = cast(asyncpg.Record, await db.get(conn, account["id"], campaign_id, lock=True))
            events.append(await _launch(conn, account, row))
        await outbox.add(conn, events)
        row = cast(asyncpg.Record, await db.get(conn, account["id"], campaign_id))
    log.info("campaign.created", campaign_id=campaign_id, channel=spec.channel, contacts=row["total_contacts"])
    return json_response(campaign_body(row, None), status=201)


async def update_campaign(request: web.Request) -> web.Response:
    """`PATCH /campaigns/{id}` (a draft; 409 otherwise): the fields given replace the campaign's,
    checked as a create checks them."""
    account = request["account"]
    patch = await read_model(request, CampaignPatch)
    async with request.app["pool"].acquire() as conn, conn.transaction():
        row = await _draft(conn, account["id"], request.match_info["id"], "change")
        try:
            req, new_contacts = patched(_as_request(row), patch)
        except ValidationError as exc:
            raise Invalid("the campaign is not valid", details=pydantic_details(exc)) from exc
        spec = normalize(req, account["default_timezone"])
        if spec.channel != row["channel"] and not new_contacts and await db.has_recipients(conn, row["id"]):
            raise Invalid(
                "the campaign's contacts were checked for another channel",
                details=[{"field": "contacts", "reason": f"give them again to send {spec.channel} instead"}],
            )
        spec.config = {
            **row["config"],
            **(patch.config.model_dump(mode="json", exclude_unset=True) if patch.config else {}),
        }
        await _check_references(conn, request, spec)
        await db.update_draft(conn, account["id"], row["id"], spec, new_contacts)
        row = cast(asyncpg.Record, await db.get(conn, account["id"], row["id"]))
    log.info("campaign.updated", campaign_id=row["id"], fields=sorted(patch.model_fields_set))
    return json_response(campaign_body(row, None))


async def delete_campaign(request: web.Request) -> web.Response:
    """`DELETE /campaigns/{id}` (a draft; 409 otherwise: cancel a launched one) → 204."""
    account = request["account"]
    async with request.app["pool"].acquire() as conn, conn.transaction():
        row = await _draft(conn, account["id"], request.match_info["id"], "delete")
        await db.delete_draft(conn, account["id"], row["id"])
    log.info("campaign.deleted", campaign_id=row["id"])
    return web.Response(status=204)


async def _draft(
    conn: Connection, account_id: str, campaign_id: str, edit: Literal["change", "delete"]
) -> asyncpg.Record:
    """The account's campaign, locked; NotFound, or Conflict unless it is a draft."""
    row = await db.get(conn, account_id, campaign_id, lock=True)
    if row is None:
        raise NotFound(f"campaign {campaign_id!r} not found")
    try:
        check_editable(row["status"], edit)
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from exc
    return row


def _as_request(row: asyncpg.Record) -> dict[str, Any]:
    """A stored campaign's settings as the request that would make it (inline contacts aside)."""
    scheduled = row["scheduled_at"] or row["scheduled_wall"]
    request = {
        "name": row["name"],
        "agent_id": row["agent_id"],
        "description": row["description"],
        "channel": row["channel"],
        "message_template": row["message_template"],
        "subject": row["subject_template"],
        "html_template": row["html_template"],
        "template_id": row["template_id"],
        "contact_group_ids": list(row["group_ids"]),
        "scheduled_at": scheduled.isoformat() if scheduled else None,
        "timezone": row["timezone"],
        "sending_window": row["sending_window"],
        "recurrence": row["recurrence"],
        "max_concurrent": row["max_concurrent"],
        "max_retries": row["max_retries"],
        "retry_interval": row["retry_interval"],
        "from_number": row["from_number"],
        "voice": row["voice"],
    }
    return {k: v for k, v in request.items() if v is not None}


async def _check_references(conn: Connection, request: web.Request, spec: Any) -> None:
    """The agent, template, sender and groups a campaign names exist in the account (the
    template's texts filled in): NotFound or Invalid naming the field."""
    account_id = request["account"]["id"]
    if await db.get_agent(conn, account_id, spec.agent_id) is None:
        raise NotFound(
            f"agent {spec.agent_id!r} not found",
            details=[{"field": "agent_id", "reason": "no such agent in this account"}],
        )
    await _apply_template(conn, account_id, spec)
    settings = request.app["settings"]
    if spec.from_number and not await is_allowed_sender(
        conn, account_id, spec.from_number, (settings.default_from_number, settings.default_from_email)
    ):
        raise Invalid(
            f"{spec.from_number!r} is not a verified sender of this account",
            details=[{"field": "from_number", "reason": "add it with POST /senders first"}],
        )
    missing = await db.missing_groups(conn, account_id, spec.group_ids)
    if missing:
        raise NotFound(
            f"contact group {missing[0]!r} not found",
            details=[{"field": spec.group_field, "reason": f"no such group: {g}"} for g in missing],
        )


async def _apply_template(conn: Connection, account_id: str, spec: Any) -> None:
    """Fill the campaign's texts from its `template_id` (texts given inline win)."""
    if spec.template_id is None:
        return
    template = await templates_db.get(conn, account_id, spec.template_id)
    if template is None:
        raise NotFound(
            f"template {spec.template_id!r} not found",
            details=[{"field": "template_id", "reason": "no such template in this account"}],
        )
    if template["channel"] != spec.channel:
        raise Invalid(
            "the template is for another channel",
            details=[
                {
                    "field": "template_id",
                    "reason": f"a {template['channel']} template cannot send a {spec.channel} campaign",
                }
            ],
        )
    spec.message_template = spec.message_template or template["body"]
    spec.subject = spec.subject or template["subject"]
    spec.html_template = spec.html_template or template["html"]


async def get_campaign(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}`."""
    row, counts = await _load(request)
    return json_response(campaign_body(row, counts))


async def list_campaigns(request: web.Request) -> web.Response:
    """`GET /campaigns?status=&channel=&limit=&cursor=` → `{"data": [...], "next_cursor": …}`."""
    limit = page_limit(request)
    status = _one_of(request, "status", get_args(Status))
    channel = _one_of(request, "channel", get_args(Channel)) or _one_of(request, "type", get_args(Channel))
    pool = request.app["pool"]
    rows = await db.list_page(
        pool,
        request["account"]["id"],
        status=status,
        channel=channel,
        after=decode_cursor(request),
        limit=limit + 1,
    )
    page = rows[:limit]
    counts = await db.delivery_counts(pool, [r["id"] for r in page])
    last = page[-1] if len(rows) > limit else None
    return json_response(
        {
            "data": [campaign_body(r, counts.get(r["id"])) for r in page],
            "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
        }
    )


def _one_of(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query filter's value, when given: one of `allowed`, else Invalid naming them."""
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise Invalid(f"unknown {name} {value!r}", details=[{"field": name, "reason": f"one of {', '.join(allowed)}"}])
    return value


async def _launch(conn: Connection, account: asyncpg.Record, row: asyncpg.Record) -> CampaignLaunched:
    """Check and record a launch (in the caller's transaction); the event to publish."""
    try:
        step = transition(row["status"], "launch")
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from exc
    if row["channel"] not in SENDING_CHANNELS:
        raise Invalid(
            f"sending {row['channel']} campaigns is not available yet; it is saved as a draft",
            details=[{"field": "channel", "reason": f"{row['channel']} cannot be launched yet"}],
        )
    if row["total_contacts"] == 0:
        raise Invalid(
            "the campaign has no contacts to send to",
            details=[{"field": "contacts", "reason": "no contacts and no non-empty contact group"}],
        )
    cost = pricing.estimate_run(row, account)
    if not await balance.reserve(conn, account["id"], row["id"], cost):
        have: Decimal = await conn.fetchval("SELECT balance FROM accounts WHERE id = $1", account["id"])
        raise PaymentRequired(
            f"the balance ({have}) cannot cover this campaign's estimated cost ({cost})",
            details=[{"field": "balance", "reason": f"needs {cost}, has {have}"}],
            extra={"estimate": str(cost), "balance": str(have)},
        )
    await db.set_status(conn, account["id"], row["id"], step.status, None)
    return CampaignLaunched(account_id=account["id"], campaign_id=row["id"], channel=row["channel"])


async def campaign_action(request: web.Request) -> web.Response:
    """`POST /campaigns/{id}/launch|pause|resume|cancel`; 409 saying why when the state forbids it."""
    action: Action = request.path.rsplit("/", 1)[-1]  # type: ignore[assignment]
    extra = await apply_action(request.app["pool"], request["account"], request.match_info["id"], action)
    row, counts = await _load(request)
    return json_response({**campaign_body(row, counts), **extra})


async def apply_action(pool: asyncpg.Pool, account: asyncpg.Record, campaign_id: str, action: Action) -> dict[str, Any]:
    """Launch, pause, resume or cancel one of the account's campaigns (API and dashboard alike):
    NotFound, Conflict with the reason, PaymentRequired, or what the answer should add."""
    async with pool.acquire() as conn, conn.transaction():
        row = await db.get(conn, account["id"], campaign_id, lock=True)
        if row is None:
            raise NotFound(f"campaign {campaign_id!r} not found")
        extra: dict[str, Any] = {}
        if action == "launch":
            event: Any = await _launch(conn, account, row)
            extra["missing_variables"] = await _missing(conn, row)
        else:
            try:
                step = transition(row["status"], action, row["resume_to"])
            except InvalidTransition as exc:
                raise Conflict(str(exc)) from exc
            await db.set_status(conn, account["id"], row["id"], step.status, step.resume_to)
            kind = {"pause": CampaignPaused, "resume": CampaignResumed, "cancel": CampaignCancelled}[action]
            event = kind(account_id=account["id"], campaign_id=row["id"])
        await outbox.add(conn, [event])
    log.info(f"campaign.{action}", campaign_id=campaign_id)
    return extra


async def _missing(conn: Connection, row: asyncpg.Record) -> dict[str, int]:
    """How many of the campaign's contacts lack each variable its texts read (they will fail)."""
    names: set[str] = set()
    for source in (row["message_template"], row["subject_template"], row["html_template"]):
        if source:
            names |= variables(source)
    return await db.missing_variables(conn, row["account_id"], row["id"], list(row["group_ids"]), names)


def _fold(row: asyncpg.Record, counts: asyncpg.Record | None) -> Counts:
    if counts is None:
        pending = row["total_contacts"] if row["status"] in ("draft", "scheduled", "paused") else 0
        return Counts(total=row["total_contacts"], pending=pending)
    return Counts(**{k: counts[k] for k in Counts.__dataclass_fields__})


async def campaign_results(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/results[?run=N]` in the seed's shape, straight from the deliveries
    (every run together, or run N of a recurring campaign)."""
    row, counts = await _load(request)
    if "run" in request.query:
        run = await _run(request, row["id"], request.query["run"])
        counts = (await db.delivery_counts(request.app["pool"], [row["id"]], run["id"])).get(row["id"])
        body = results(row["id"], row["status"], _fold(row, counts))
        return json_response({**body, "run": run["seq"], "run_status": run["status"]})
    return json_response(results(row["id"], row["status"], _fold(row, counts)))


async def _run(request: web.Request, campaign_id: str, seq: str) -> asyncpg.Record:
    found = [r for r in await db.runs(request.app["pool"], campaign_id) if str(r["seq"]) == seq]
    if not found:
        raise NotFound(f"campaign {campaign_id!r} has no run {seq!r}")
    return found[0]


async def campaign_runs(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/runs`: each run (one per occurrence) with its own results."""
    row, _ = await _load(request)
    pool = request.app["pool"]
    data = []
    for run in await db.runs(pool, row["id"]):
        counts = (await db.delivery_counts(pool, [row["id"]], run["id"])).get(row["id"])
        folded = _fold(row, counts) if counts is not None else Counts()
        data.append(
            {
                "run": run["seq"],
                "id": run["id"],
                "status": run["status"],
                "occurs_at": iso(run["occurs_at"] or run["occurs_wall"]),
                "completed_at": iso(run["completed_at"]),
                "results": results(row["id"], run["status"], folded),
            }
        )
    return json_response({"data": data})


async def campaign_deliveries(request: web.Request) -> web.Response:
    """`GET /campaigns/{id}/deliveries?state=&limit=&cursor=`: each contact's delivery, with how its
    send time was chosen (`plan_reason`: zone and its source, window, quiet-hours rule and version)."""
    row, _ = await _load(request)
    limit = page_limit(request)
    rows = await db.deliveries_page(
        request.app["pool"],
        row["id"],
        state=request.query.get("state"),
        after=request.query.get("cursor"),
        limit=limit + 1,
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
