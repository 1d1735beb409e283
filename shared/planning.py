"""PURE: one contact of a run → its planned delivery row (send time and the reason for it).

Shared by the scheduler (planning runs, re-checking late releases) and the API (dry runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from shared.db.deliveries import PLAN_COLUMNS
from shared.domain import quiet_hours
from shared.domain.recurrence import Recurrence, next_occurrence
from shared.domain.timeplan import Plan, Schedule, Unplannable, plan_send, resolve_wall
from shared.domain.windows import SendingWindow
from shared.domain.zones import ZoneChoice, resolve_zones, zone
from shared.ids import new_id
from shared.row import Row

_STATE = PLAN_COLUMNS.index("state")
_SEND_AT = PLAN_COLUMNS.index("send_at")
_REASON = PLAN_COLUMNS.index("plan_reason")
_ADDRESS = PLAN_COLUMNS.index("to_address")
_ERROR = PLAN_COLUMNS.index("error")


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
    first_wall: datetime  # the run's wall-clock time (the base of a recurrence)
    #: A recurring campaign's next run (its wall-clock time), and the zone its runs are one instant
    #: in (None: each contact's own): a contact this run could reach only once that run has come is
    #: left to it (skipped here), not sent the same message twice at once.
    next_wall: datetime | None = None
    runs_zone: str | None = None
    #: Per-run memo of `plan_for`: the plan depends only on (zones, rule) within one run.
    _plans: dict[tuple[ZoneChoice, quiet_hours.QuietRule | None], tuple[datetime, Any, str | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def plan_for(self, zones: ZoneChoice, quiet: quiet_hours.QuietRule | None) -> tuple[datetime, Any, str | None]:
        """(send_at, plan_reason, skip error) for contacts with these zones and quiet-hours rule.

        Schedule, window and `now` are the run's, so contacts sharing (zones, rule) share the plan:
        it is computed once per run (a benchmark hot spot) and its reason dict is shared by their
        rows: treat it as read-only.
        """
        key = (zones, quiet)
        found = self._plans.get(key)
        if found is None:
            try:
                plan = plan_send(self.schedule, zones, self.window, quiet, self.now)
            except Unplannable as exc:
                found = (self.now, None, f"no allowed send time: {exc}")
            else:
                found = (plan.send_at, plan.reason, self._superseded(plan, zones))
            self._plans[key] = found
        return found

    def _superseded(self, plan: Plan, zones: ZoneChoice) -> str | None:
        """Why a send planned so is skipped: the campaign's next run reaches the contact no later,
        or an excluded day moved it to the next run's day (a daily campaign without weekends: its
        Saturday and Sunday runs would go on Monday beside Monday's own); else None."""
        if self.next_wall is None:
            return None
        names = (self.runs_zone,) if self.runs_zone else zones.zones
        following = min(resolve_wall(self.next_wall, name)[0] for name in names)
        send_at = plan.send_at
        if send_at < following:
            local = zone(str(plan.reason["zone"]))
            moved_by_day = "excluded_day_skipped" in cast(list[str], plan.reason["adjustments"])
            if not moved_by_day or send_at.astimezone(local).date() < following.astimezone(local).date():
                return None
        return (
            f"its first allowed time, {send_at:%Y-%m-%dT%H:%M:%SZ}, is on or after the day of the campaign's"
            f" next run ({following:%Y-%m-%dT%H:%M:%SZ}), which reaches the contact instead"
        )

    @classmethod
    def build(
        cls,
        run_id: str,
        campaign: Row,
        account: Row,
        now: datetime,
        wall: datetime | None = None,
        next_wall: datetime | None = None,
    ) -> RunContext:
        """The context of a run of `campaign` planned at `now`: run 1 follows the campaign's
        schedule (a recurring one's first occurrence on or after it); a later run of a recurring
        campaign is at its occurrence's `wall` time. `next_wall`: the wall-clock time of the run
        after this one, when there is one."""
        window = campaign["sending_window"] or {}
        zone = None if campaign["timezone"] == "contact_local" else campaign["timezone"]
        quiet = account["quiet_hours"] and campaign["channel"] in ("sms", "voice")
        if wall is None:  # run 1 of a recurring campaign whose schedule does not fit its own rule
            wall = _first_occurrence(campaign, zone or account["default_timezone"], now)
        shared_zone = runs_zone(campaign, account)
        if wall is not None and zone is None and shared_zone is not None:
            # a contact_local campaign given one instant: each run is one instant too, the
            # occurrence's time read where its rule was (the account's zone)
            schedule = Schedule(instant=resolve_wall(wall, shared_zone)[0])
        elif wall is not None:
            schedule = Schedule(wall=wall, wall_zone=zone)
        else:
            # A named zone reads a wall-clock schedule there for everyone; windows and quiet hours
            # are always the contact's own local time.
            schedule = Schedule(
                instant=campaign["scheduled_at"],
                wall=campaign["scheduled_wall"],
                wall_zone=zone if campaign["scheduled_wall"] is not None else None,
            )
        return cls(
            run_id=run_id,
            campaign_id=campaign["id"],
            account_id=account["id"],
            channel=campaign["channel"],
            schedule=schedule,
            campaign_zone=zone,
            account_zone=account["default_timezone"],
            window=SendingWindow.parse(window.get("start_hour"), window.get("end_hour"), window.get("excluded_days")),
            quiet_rules=quiet_hours.load_rules() if quiet else None,
            now=now,
            first_wall=wall or _wall_of(campaign, zone or account["default_timezone"], now),
            next_wall=next_wall,
            runs_zone=shared_zone,
        )


def plan_contact(ctx: RunContext, contact: Row) -> tuple[Any, ...]:
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
        send_at, reason, skip = ctx.plan_for(zones, quiet)
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


def replan_contact(ctx: RunContext, contact: Row) -> tuple[datetime, Any, str, str | None] | None:
    """For a released delivery whose contact moved since it was planned: (its new instant, plan
    reason, the contact's address, and why it is skipped or None) when the run's plan for the
    contact as it is now is to skip it or falls after `ctx.now`; None when it may go now."""
    row = plan_contact(ctx, contact)
    if row[_STATE] == "planned" and row[_SEND_AT] <= ctx.now:
        return None
    return row[_SEND_AT], row[_REASON], row[_ADDRESS], row[_ERROR]


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


def runs_zone(campaign: Row, account: Row) -> str | None:
    """The zone a recurring campaign's occurrences are one instant in for every contact: its own;
    for a `contact_local` campaign scheduled at one instant (an offset given), the account's, where
    its rule reads the days; None when each contact reads them in their own zone."""
    if campaign["timezone"] != "contact_local":
        return str(campaign["timezone"])
    if campaign["scheduled_at"] is not None and campaign["scheduled_wall"] is None:
        return str(account["default_timezone"])
    return None


def _first_occurrence(campaign: Row, zone_name: str, now: datetime) -> datetime | None:
    """For a recurring campaign scheduled on a day its rule skips (weekly on Mondays, scheduled on a
    Tuesday), the wall time of its first run that fits; None when the schedule fits (or no rule)."""
    if not campaign["recurrence"]:
        return None
    scheduled = _wall_of(campaign, zone_name, now)
    first = next_occurrence(Recurrence.parse(campaign["recurrence"]), scheduled)
    return None if first is None or first.at == scheduled else first.at


def _wall_of(campaign: Row, zone_name: str, now: datetime) -> datetime:
    """The campaign's first run as a wall-clock time in `zone_name` (its schedule, or now)."""
    wall: datetime | None = campaign["scheduled_wall"]
    if wall is not None:
        return wall
    instant = campaign["scheduled_at"] or now
    return instant.astimezone(zone(zone_name)).replace(tzinfo=None, microsecond=0)


#: The earliest local time on Earth is UTC+14: a contact_local run can start this much before UTC.
_EARLIEST_OFFSET = timedelta(hours=14)
#: Plan a run this long before its first send, so its deliveries are in place in time.
_LEAD = timedelta(hours=1)


def next_run(
    campaign: Row, account: Row, first_wall: datetime, this_wall: datetime
) -> tuple[datetime, datetime, datetime | None] | None:
    """For a recurring campaign, the run after `this_wall`: (its wall time, when to plan it, and
    its instant when it is one for every contact)."""
    if not campaign["recurrence"]:
        return None
    following = next_occurrence(Recurrence.parse(campaign["recurrence"]), first_wall, this_wall)
    if following is None:
        return None
    zone_name = runs_zone(campaign, account)
    if zone_name is None:
        return following.at, following.at.replace(tzinfo=UTC) - _EARLIEST_OFFSET - _LEAD, None
    instant = resolve_wall(following.at, zone_name)[0].astimezone(UTC)
    return following.at, instant - _LEAD, instant
