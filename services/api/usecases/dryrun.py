"""What launching a campaign would do, without sending or writing anything."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.api.usecases.campaigns import missing_variables
from shared.db import campaigns as db
from shared.db import deliveries
from shared.db.deliveries import PLAN_COLUMNS
from shared.domain import pricing
from shared.domain.sms import message_too_long
from shared.domain.templating import MissingVariable, TemplateError, campaign_text, contact_context, render
from shared.domain.times import iso
from shared.errors import NotFound
from shared.planning import RunContext, plan_contact

#: How many rendered examples the answer shows.
SAMPLES = 3
_SEND_AT, _STATE, _REASON, _ERROR = (PLAN_COLUMNS.index(c) for c in ("send_at", "state", "plan_reason", "error"))


def _skip_kind(error: str) -> str:
    if "opted out" in error:
        return "opted_out"
    if "has no" in error:
        return "no_address"
    return "no_allowed_time"  # the window and the legal quiet hours never meet


async def dry_run(pool: asyncpg.Pool, account: asyncpg.Record, campaign_id: str, now: datetime) -> dict[str, Any]:
    """How many contacts go now, how many wait (until when), how many are skipped and why, how many
    lack a template variable, the cost against the balance, and a few sample renders."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        row = await db.get(conn, account["id"], campaign_id)
        if row is None:
            raise NotFound(f"campaign {campaign_id!r} not found")
        agent = await db.get_agent(conn, account["id"], row["agent_id"])
        context = RunContext.build("dry-run", row, account, now)
        skipped: Counter[str] = Counter()
        total = send_now = waiting = 0
        first_wait: datetime | None = None
        last_wait: datetime | None = None
        samples: list[dict[str, Any]] = []
        async for batch in deliveries.recipients(conn, account["id"], row["id"], list(row["group_ids"])):
            for contact in batch:
                planned = plan_contact(context, contact)
                total += 1
                if planned[_STATE] == "skipped":
                    skipped[_skip_kind(planned[_ERROR])] += 1
                    continue
                send_at = planned[_SEND_AT]
                if send_at <= now + timedelta(minutes=1):
                    send_now += 1
                else:
                    waiting += 1
                    first_wait = min(first_wait or send_at, send_at)
                    last_wait = max(last_wait or send_at, send_at)
                if len(samples) < SAMPLES:  # a render may take its budget's time: off the event loop
                    samples.append(await asyncio.to_thread(_sample, row, contact, agent, send_at, planned[_REASON]))
        missing = await missing_variables(conn, row)
    # the contacts it can reach: the opted out and those without an address cost nothing (a launch
    # the balance can cover for those is not refused)
    reachable = total - skipped["opted_out"] - skipped["no_address"]
    cost = pricing.estimate_run({**dict(row), "total_contacts": reachable}, account)
    return {
        "campaign_id": row["id"],
        "status": row["status"],
        "total_contacts": total,
        "send_now": send_now,
        "waiting": {"count": waiting, "first_at": iso(first_wait), "last_at": iso(last_wait)},
        "skipped": {
            "total": sum(skipped.values()),
            **{k: skipped.get(k, 0) for k in ("opted_out", "no_address", "no_allowed_time")},
        },
        "missing_variables": missing,
        "cost": {
            "estimate": str(cost),
            "balance": str(account["balance"]),
            "sufficient": cost <= account["balance"],
        },
        "samples": samples,
    }


def _sample(row: Any, contact: Any, agent: Any, send_at: datetime, reason: Any) -> dict[str, Any]:
    text = campaign_text(row["message_template"], row["voice"], agent["opening_message"] if agent else None)
    try:
        rendered = render(text, contact_context(contact, agent["name"] if agent else None))
        message: str | None = rendered
        problem = None if rendered.strip() or row["html_template"] else "the rendered message is empty"
        if problem is None and row["channel"] == "sms":  # as the dispatcher decides (decide.py)
            problem = message_too_long(rendered)
    except (MissingVariable, TemplateError) as exc:
        message, problem = None, str(exc)
    return {
        "contact_id": contact["id"],
        "to": contact["email"] if row["channel"] == "email" else contact["phone"],
        "send_at": iso(send_at),
        "message": message,
        "error": problem,
        "plan_reason": reason,
    }
