"""Campaigns: create, change and delete a draft, launch/pause/resume/cancel, and their results."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from pydantic import ValidationError

from services.api.schemas import CampaignCreate, CampaignPatch, CampaignSpec, normalize, patched, pydantic_details
from services.api.usecases.account import is_allowed_sender
from shared import clock
from shared.bus import outbox
from shared.channels import SENDING_CHANNELS
from shared.db import accounts, balance, breaker
from shared.db import campaigns as db
from shared.db import templates as templates_db
from shared.db.connection import Connection, Executor
from shared.domain.campaign import Action, InvalidTransition, check_editable, transition
from shared.domain.results import Counts, results
from shared.domain.templating import campaign_text, variables
from shared.domain.zones import is_valid_zone
from shared.errors import Conflict, Invalid, NotFound, PaymentRequired
from shared.messages.campaign_events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignLaunched,
    CampaignPaused,
    CampaignResumed,
)
from shared.reservations import reserve_run
from shared.settings import Settings

log = structlog.get_logger()


async def load(pool: Executor, account_id: str, campaign_id: str) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """One of the account's campaigns (NotFound otherwise) and its delivery counts (None before any)."""
    row = await db.get(pool, account_id, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id!r} not found")
    counts = (await db.delivery_counts(pool, [row["id"]])).get(row["id"])
    return row, counts


async def create(
    pool: asyncpg.Pool, account: asyncpg.Record, settings: Settings, body: CampaignCreate
) -> tuple[asyncpg.Record, list[dict[str, str]], dict[str, int] | None]:
    """A new draft (launched at once when the request says `"status": "scheduled"`), the warnings
    about what it was given, and for one launched at once what a launch answers with besides
    (`missing_variables`; None for a draft)."""
    spec = await asyncio.to_thread(normalize, body, account["default_timezone"], _now(settings))
    async with pool.acquire() as conn, conn.transaction():
        await _check_references(conn, account["id"], settings, spec)
        campaign_id = await db.insert_campaign(conn, account["id"], spec)
        events: list[Any] = [CampaignCreated(account_id=account["id"], campaign_id=campaign_id, channel=spec.channel)]
        # The campaign was inserted above, in this transaction.
        if spec.launch:
            row = cast(asyncpg.Record, await db.get(conn, account["id"], campaign_id, lock=True))
            events.append(await _launch(conn, account, row, platform_senders(settings)))
        await outbox.add(conn, events)
        row = cast(asyncpg.Record, await db.get(conn, account["id"], campaign_id))
    log.info("campaign.created", campaign_id=campaign_id, channel=spec.channel, contacts=row["total_contacts"])
    return row, spec.warnings, (await missing_variables(pool, row) if spec.launch else None)


async def update_draft(
    pool: asyncpg.Pool, account: asyncpg.Record, settings: Settings, campaign_id: str, patch: CampaignPatch
) -> tuple[asyncpg.Record, list[dict[str, str]]]:
    """Change a draft (Conflict once launched): the fields given replace the campaign's, checked as
    a create checks them; and the warnings about the result."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _draft(conn, account["id"], campaign_id, "change")
        try:
            req, new_contacts = patched(as_request(row), patch)
        except ValidationError as exc:
            raise Invalid("the campaign is not valid", details=pydantic_details(exc, CampaignCreate)) from exc
        spec = await asyncio.to_thread(normalize, req, account["default_timezone"], _now(settings))
        if spec.channel != row["channel"] and not new_contacts and await db.has_recipients(conn, row["id"]):
            raise Invalid(
                "the campaign's contacts were checked for another channel",
                details=[{"field": "contacts", "reason": f"give them again to send {spec.channel} instead"}],
            )
        spec.config = {
            **row["config"],
            **(patch.config.model_dump(mode="json", exclude_unset=True) if patch.config else {}),
        }
        # the texts a template filled in are the campaign's own copy: a change that does not name a
        # template again does not need it still there (it may have been deleted meanwhile)
        named = "template_id" in patch.model_fields_set or (
            patch.config is not None and "template_id" in patch.config.model_fields_set
        )
        await _check_references(conn, account["id"], settings, spec, template_named=named)
        await db.update_draft(conn, account["id"], row["id"], spec, new_contacts)
        row = cast(asyncpg.Record, await db.get(conn, account["id"], row["id"]))
    log.info("campaign.updated", campaign_id=row["id"], fields=sorted(patch.model_fields_set))
    return row, spec.warnings


async def draft_channel(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> str:
    """The channel of the account's draft (what a change leaving it is checked for); NotFound, or
    Conflict once launched."""
    row = await db.get(pool, account_id, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id!r} not found")
    _check_editable(row, "change")
    return cast(str, row["channel"])


def _now(settings: Settings) -> datetime:
    """Now on the platform's clock (the scheduler's: simulated when the settings say so)."""
    return _clock(settings.clock_start, settings.clock_rate, settings.clock_origin)()


@functools.cache
def _clock(start: datetime | None, rate: float, origin: datetime | None) -> clock.Clock:
    """One clock per process and setting: a simulated one runs from when it was first asked, as the
    scheduler's runs from its start (made anew for each request, it would never move)."""
    return clock.from_settings(start, rate, origin)


async def delete_draft(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> None:
    """Delete a draft (Conflict once launched: cancel it instead)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _draft(conn, account_id, campaign_id, "delete")
        await db.delete_draft(conn, account_id, row["id"])
    log.info("campaign.deleted", campaign_id=row["id"])


async def _draft(
    conn: Connection, account_id: str, campaign_id: str, edit: Literal["change", "delete"]
) -> asyncpg.Record:
    """The account's campaign, locked; NotFound, or Conflict unless it is a draft."""
    row = await db.get(conn, account_id, campaign_id, lock=True)
    if row is None:
        raise NotFound(f"campaign {campaign_id!r} not found")
    _check_editable(row, edit)
    return row


def _check_editable(row: asyncpg.Record, edit: Literal["change", "delete"]) -> None:
    """Conflict unless the campaign is a draft."""
    try:
        check_editable(row["status"], edit)
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from exc


def as_request(row: asyncpg.Record) -> dict[str, Any]:
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
        "circuit_breaker": row["circuit_breaker"],
    }
    return {k: v for k, v in request.items() if v is not None}


async def _check_references(
    conn: Connection, account_id: str, settings: Settings, spec: CampaignSpec, *, template_named: bool = True
) -> None:
    """The agent, template, sender and groups a campaign names exist in the account (the
    template's texts filled in): NotFound or Invalid naming the field. A template the request
    did not name (`template_named` False: a change keeping the draft's) may be gone."""
    if await db.get_agent(conn, account_id, spec.agent_id) is None:
        raise NotFound(
            f"agent {spec.agent_id!r} not found",
            details=[{"field": "agent_id", "reason": "no such agent in this account"}],
        )
    await _apply_template(conn, account_id, spec, required=template_named)
    await _check_sender(conn, account_id, spec.from_number, platform_senders(settings), spec.from_field)
    missing = await db.missing_groups(conn, account_id, spec.group_ids)
    if missing:
        raise NotFound(
            f"contact group {missing[0]!r} not found",
            details=[{"field": spec.group_field, "reason": f"no such group: {g}"} for g in missing],
        )


async def _apply_template(conn: Connection, account_id: str, spec: CampaignSpec, *, required: bool) -> None:
    """Fill the campaign's texts from its `template_id` (texts given inline win); NotFound when
    it is gone, unless not `required` (the campaign keeps the texts it copied)."""
    if spec.template_id is None:
        return
    template = await templates_db.get(conn, account_id, spec.template_id)
    if template is None and not required:
        return
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


async def _check_text(conn: Connection, account_id: str, row: asyncpg.Record) -> None:
    """Invalid for a campaign with nothing to say: no message (nor HTML for email) and, for a
    call, no opening message of its own or of its agent. Every delivery would fail."""
    agent = await db.get_agent(conn, account_id, row["agent_id"])
    opening = agent["opening_message"] if agent else None
    if campaign_text(row["message_template"], row["voice"], opening).strip() or row["html_template"]:
        return
    if row["channel"] == "voice":
        reason = "a call needs something to say: message_template, an opening_message, or its agent's opening_message"
    else:
        reason = "the campaign has no message to send: give message_template (or template_id)"
    raise Invalid("the campaign has nothing to say", details=[{"field": "message_template", "reason": reason}])


def platform_senders(settings: Settings) -> tuple[str, ...]:
    """The platform's default senders, which every account may send from."""
    return (settings.default_from_number, settings.default_from_email)


async def _check_sender(
    conn: Connection, account_id: str, address: str | None, defaults: tuple[str, ...], field: str = "from_number"
) -> None:
    """Invalid naming the field (`from_number`, or the synonym the request sent) and the sender
    unless it is none, a platform default, or a verified sender of the account (a pending one is
    not yet)."""
    if address and not await is_allowed_sender(conn, account_id, address, defaults):
        raise Invalid(
            f"{address!r} is not a verified sender of this account",
            details=[
                {
                    "field": field,
                    "reason": f"{address} must be a verified sender: add it with POST /senders (an email address "
                    "is verified once the link mailed to it is opened)",
                }
            ],
        )


async def _launch(
    conn: Connection, account: asyncpg.Record, row: asyncpg.Record, defaults: tuple[str, ...]
) -> CampaignLaunched:
    """Check and record a launch (in the caller's transaction); the event to publish."""
    try:
        step = transition(row["status"], "launch")
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from exc
    await _check_sender(conn, account["id"], row["from_number"], defaults)
    if row["channel"] not in SENDING_CHANNELS:
        raise Invalid(
            f"sending {row['channel']} campaigns is not available yet; it is saved as a draft",
            details=[{"field": "channel", "reason": f"{row['channel']} cannot be launched yet"}],
        )
    if await db.recount(conn, account["id"], row["id"]) != row["total_contacts"]:  # its groups changed since
        row = cast(asyncpg.Record, await db.get(conn, account["id"], row["id"], lock=True))
    if row["total_contacts"] == 0:
        raise Invalid(
            "the campaign has no contacts to send to",
            details=[{"field": "contacts", "reason": "no contacts and no non-empty contact group"}],
        )
    await _check_text(conn, account["id"], row)
    reserved, cost = await reserve_run(conn, account, row)
    if not reserved:
        have = cast(asyncpg.Record, await accounts.get(conn, account["id"]))["balance"]
        raise PaymentRequired(
            f"the balance ({have}) cannot cover this campaign's estimated cost ({cost})",
            details=[{"field": "balance", "reason": f"needs {cost}, has {have}"}],
            extra={"estimate": str(cost), "balance": str(have)},
        )
    await db.set_status(conn, account["id"], row["id"], step.status, None)
    return CampaignLaunched(account_id=account["id"], campaign_id=row["id"], channel=row["channel"])


async def apply_action(
    pool: asyncpg.Pool, account: asyncpg.Record, campaign_id: str, action: Action, defaults: tuple[str, ...]
) -> dict[str, Any]:
    """Launch, pause, resume or cancel one of the account's campaigns (`defaults`: the platform's
    senders, `platform_senders`): NotFound, Conflict with the reason, PaymentRequired, Invalid (a
    sender not verified), or what the answer should add (`missing_variables` at launch)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await db.get(conn, account["id"], campaign_id, lock=True)
        if row is None:
            raise NotFound(f"campaign {campaign_id!r} not found")
        extra: dict[str, Any] = {}
        if action == "launch":
            event: Any = await _launch(conn, account, row, defaults)
        else:
            try:
                step = transition(row["status"], action, row["resume_to"])
            except InvalidTransition as exc:
                raise Conflict(str(exc)) from exc
            await db.set_status(conn, account["id"], row["id"], step.status, step.resume_to)
            if action == "resume":  # the circuit breaker looks at a new window, and forgets why it paused
                await breaker.new_window(conn, row["id"])
            if action == "cancel":  # nothing of it starts any more: what it held goes back now
                await balance.refund(conn, [row["id"]])
            kind = {"pause": CampaignPaused, "resume": CampaignResumed, "cancel": CampaignCancelled}[action]
            event = kind(account_id=account["id"], campaign_id=row["id"])
        await outbox.add(conn, [event])
    log.info(f"campaign.{action}", campaign_id=campaign_id)
    if action == "launch":
        # read after the commit: the first sends start meanwhile (a large list takes a while to read)
        extra["missing_variables"] = await missing_variables(pool, row)
    return extra


async def missing_variables(conn: Executor, row: asyncpg.Record) -> dict[str, int]:
    """How many of the campaign's contacts lack each variable its texts read (they will fail): its
    message, subject and HTML, and a call's opening (its own, else its agent's). The channel's own
    address (`phone` for SMS and calls, `email` for email) is not counted: a contact without one is
    skipped, never sent a hole."""
    sources = [row["message_template"], row["subject_template"], row["html_template"]]
    voice = row["voice"] or {}
    if row["channel"] == "voice" and not row["message_template"]:
        agent = None if voice.get("opening_message") else await db.get_agent(conn, row["account_id"], row["agent_id"])
        sources.append(campaign_text(None, voice, agent["opening_message"] if agent else None))
    names: set[str] = set()
    for source in sources:
        if source:
            names |= variables(source)
    names.discard("email" if row["channel"] == "email" else "phone")
    if not names:
        return {}
    return await db.missing_variables(conn, row["account_id"], row["id"], list(row["group_ids"]), names)


def fold(row: asyncpg.Record, counts: asyncpg.Record | None) -> Counts:
    """The counts as the results read them (before any delivery: every contact pending until it ends)."""
    if counts is None:
        pending = row["total_contacts"] if row["status"] in ("draft", "scheduled", "paused") else 0
        return Counts(total=row["total_contacts"], pending=pending)
    return Counts(**{k: counts[k] for k in Counts.__dataclass_fields__})


def fold_run(row: asyncpg.Record, run: asyncpg.Record, counts: asyncpg.Record | None) -> Counts:
    """One run's counts as the results read them: from its deliveries; before the scheduler has
    planned it (no delivery yet), the campaign's contacts, each pending while the run is still to
    come, each cancelled once a cancel cut it off, none once it cannot come otherwise (the campaign
    completed or failed before it)."""
    if counts is not None:
        return fold(row, counts)
    if run["status"] == "pending" and row["status"] in ("scheduled", "running", "paused"):
        return Counts(total=row["total_contacts"], pending=row["total_contacts"])
    if run["status"] == "cancelled":
        return Counts(total=row["total_contacts"], cancelled=row["total_contacts"])
    return Counts()


def occurs_at(row: asyncpg.Record, run: asyncpg.Record) -> datetime | None:
    """When a run occurs: its instant; for one still to come, its wall-clock time read in the
    campaign's zone (an instant too), or as it is (naive) when each contact reads it in theirs."""
    if run["occurs_at"] is not None or run["occurs_wall"] is None:
        return cast(datetime | None, run["occurs_at"])
    wall: datetime = run["occurs_wall"]
    if row["timezone"] == "contact_local" or not is_valid_zone(row["timezone"]):
        return wall
    return wall.replace(tzinfo=ZoneInfo(row["timezone"]))


def results_of(row: asyncpg.Record, counts: asyncpg.Record | None) -> dict[str, Any]:
    """The campaign's results in the seed's shape, with every other figure the counts carry
    (`undelivered` once the database reports it)."""
    body = results(row["id"], row["status"], fold(row, counts))
    if counts is not None:
        for key in counts.keys():  # noqa: SIM118 (an asyncpg Record iterates over its values)
            if key not in body and key not in ("campaign_id", "total", "response_seconds"):
                body[key] = counts[key]
    return body
