"""PURE: one contact of a run → its planned delivery row (send time and the reason for it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db.deliveries import PLAN_COLUMNS
from shared.domain import quiet_hours
from shared.domain.timeplan import Schedule, Unplannable, plan_send
from shared.domain.windows import SendingWindow
from shared.domain.zones import ZoneChoice, resolve_zones
from shared.ids import new_id

_STATE = PLAN_COLUMNS.index("state")


@dataclass(frozen=True)
class RunContext:
    """What every contact of one run shares."""

    run_id: str
    campaign_id: str
    account_id: str
    channel: str
    schedule: Schedule
    campaign_zone: str | None  # None: each contact's own zone (`contact_local`)
    account_zone: str
    window: SendingWindow
    quiet_rules: quiet_hours.QuietTable | None  # None: no legal quiet hours apply
    now: datetime

    @classmethod
    def build(cls, run_id: str, campaign: Mapping[str, Any], account: Mapping[str, Any], now: datetime) -> RunContext:
        """The context of a run of `campaign`, planned at `now`."""
        window = campaign["sending_window"] or {}
        zone = None if campaign["timezone"] == "contact_local" else campaign["timezone"]
        quiet = account["quiet_hours"] and campaign["channel"] in ("sms", "voice")
        return cls(
            run_id=run_id,
            campaign_id=campaign["id"],
            account_id=account["id"],
            channel=campaign["channel"],
            # A named zone reads a wall-clock schedule there for everyone; windows and quiet hours
            # are always the contact's own local time.
            schedule=Schedule(
                instant=campaign["scheduled_at"],
                wall=campaign["scheduled_wall"],
                wall_zone=zone if campaign["scheduled_wall"] is not None else None,
            ),
            campaign_zone=zone,
            account_zone=account["default_timezone"],
            window=SendingWindow.parse(
                window.get("start_hour"), window.get("end_hour"), window.get("excluded_days")
            ),
            quiet_rules=quiet_hours.load_rules() if quiet else None,
            now=now,
        )


def plan_contact(ctx: RunContext, contact: Mapping[str, Any]) -> tuple[Any, ...]:
    """The delivery row (PLAN_COLUMNS order) for one contact: planned, or skipped with a reason."""
    address = contact["email"] if ctx.channel == "email" else contact["phone"]
    skip = None
    if not address:
        skip = f"contact has no {'email' if ctx.channel == 'email' else 'phone number'}"
    elif contact[f"opted_out_{ctx.channel}"]:
        skip = f"contact opted out of {ctx.channel}"
    send_at, reason = ctx.now, None
    if skip is None:
        zones = resolve_zones(contact["timezone"], contact["phone"], ctx.campaign_zone, ctx.account_zone)
        quiet = None
        if ctx.quiet_rules is not None and contact["phone"]:
            state = (contact["metadata"] or {}).get("state")
            jurisdiction = quiet_hours.jurisdiction_for(contact["phone"], state)
            quiet = quiet_hours.rule_for(jurisdiction, ctx.quiet_rules) if jurisdiction else None
        try:
            plan = plan_send(ctx.schedule, zones, ctx.window, quiet, ctx.now)
        except Unplannable as exc:
            skip = f"no allowed send time: {exc}"
        else:
            send_at, reason = plan.send_at, plan.reason
    return (
        new_id("delivery"),
        ctx.run_id,
        ctx.campaign_id,
        ctx.account_id,
        contact["id"],
        ctx.channel,
        address or "",
        "skipped" if skip else "planned",
        send_at,
        reason,
        skip,
    )


def next_allowed(reason: Mapping[str, Any] | None, window: Mapping[str, Any] | None, now: datetime) -> datetime | None:
    """For a delivery released late (a pause, a backlog, a scheduler that was down): None when `now`
    is still allowed by its window and quiet hours, else the next instant that is."""
    if not reason or not reason.get("zones"):
        return None
    window = window or {}
    quiet = None
    if reason.get("quiet_hours"):
        quiet = quiet_hours.rule_for(reason["quiet_hours"].get("jurisdiction"), quiet_hours.load_rules())
    plan = plan_send(
        Schedule(),
        ZoneChoice(tuple(reason["zones"]), reason.get("zone_source", "campaign")),
        SendingWindow.parse(window.get("start_hour"), window.get("end_hour"), window.get("excluded_days")),
        quiet,
        now,
    )
    return plan.send_at if plan.send_at > now else None
