"""PURE: how the dashboard words things: counts, times, money, durations, and a delivery's
"why this instant" read out of its `plan_reason`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

from shared.domain.webhooks import span

#: Words for the planner's adjustment tags (`shared/domain/timeplan.py`).
ADJUSTMENTS = {
    "past_moved_to_now": "its scheduled time had passed, so it went at once",
    "dst_gap_shifted": "the scheduled time fell in a daylight-saving gap and moved past it",
    "outside_window_moved": "moved into the campaign's sending window",
    "excluded_day_skipped": "moved past a day the sending window excludes",
    "quiet_hours_moved": "moved out of the legal quiet hours",
}
#: Where a contact's zone came from.
ZONE_SOURCES = {
    "contact": "the contact's own time zone",
    "phone": "the zone of the contact's phone number",
    "campaign": "the campaign's time zone",
    "account": "the account's default time zone",
}


def plural(count: Any, one: str, many: str | None = None) -> str:
    """`1 contact`, `2 contacts` (`many` when the plural is not `one` + s)."""
    n = int(count or 0)
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def when(value: datetime | str | None, empty: str = "—", zone: str | None = None) -> Markup:
    """A `<time>` element: the instant in UTC (the page's script shows it in the viewer's zone);
    a naive (wall-clock) time as it is, read in `zone` (a campaign's time zone) or, when that is
    none or `contact_local`, in each contact's zone. ISO text is read first."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value is None:
        return escape(empty)
    if value.tzinfo is None:
        where = zone if zone and zone != "contact_local" else "each contact's local time"
        return Markup('<time datetime="{0}">{1} ({2})</time>').format(
            value.isoformat(timespec="minutes"), value.strftime("%Y-%m-%d %H:%M"), where
        )
    instant = value.astimezone(UTC)
    return Markup('<time datetime="{0}" data-local>{1}</time>').format(
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"), instant.strftime("%Y-%m-%d %H:%M UTC")
    )


def figure(value: Any) -> str:
    """A results figure: `1,234`, a string as it is, `—` for none."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def duration(seconds: float | None) -> str:
    """`about 4 min`, `about 2 h 5 min`, `under a minute`; `—` for none."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {rest} min" if rest else f"about {hours} h"
    return f"about {round(hours / 24)} days"


def money(value: Any) -> str:
    """An amount with four decimals, as the API gives it (`0.001` → `0.0010`, `1234.5` →
    `1,234.5000`), so that amounts side by side read alike."""
    if value is None:
        return "—"
    return f"{Decimal(str(value)):,.4f}"


def rate(per_second: float) -> str:
    """A send rate in the unit that reads best."""
    if per_second <= 0:
        return "0 per minute"
    if per_second >= 1:
        return f"{per_second:,.1f} per second"
    return f"{per_second * 60:,.1f} per minute"


def local_time(value: Any, short: bool = False) -> str:
    """An ISO local time as `2026-03-10 09:00 (UTC-05:00)`, or just `09:00` when `short`."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if short:
        return at.strftime("%H:%M")
    offset = at.strftime("%z")
    zone = f" (UTC{offset[:3]}:{offset[3:]})" if offset else ""
    return at.strftime("%Y-%m-%d %H:%M") + zone


def reason_lines(reason: Mapping[str, Any] | None, error: str | None = None) -> list[str]:
    """Why a delivery was planned for its instant, one sentence a line."""
    if not reason:
        return [error] if error else ["Sent as soon as it was released (no plan recorded)."]
    lines = []
    zone = reason.get("zone")
    source = ZONE_SOURCES.get(str(reason.get("zone_source")), str(reason.get("zone_source") or "unknown"))
    zones = reason.get("zones") or []
    if zone:
        also = f" (and {', '.join(z for z in zones if z != zone)})" if len(zones) > 1 else ""
        lines.append(f"Time zone {zone}{also}, from {source}.")
    if reason.get("local_send_time"):
        lines.append(f"Local send time {local_time(reason['local_send_time'])}.")
    window = reason.get("window") or {}
    if window and (window.get("start_hour") is not None or window.get("excluded_days")):
        hours = (
            f"{window.get('start_hour', 0):02d}:00 to {window.get('end_hour', 24):02d}:00"
            if window.get("start_hour") is not None
            else "any hour"
        )
        days = f", not on {', '.join(window['excluded_days'])}" if window.get("excluded_days") else ""
        lines.append(f"Sending window {hours}{days} in the contact's local time.")
    quiet = reason.get("quiet_hours")
    if quiet:
        lines.append(
            f"Quiet hours of {quiet.get('jurisdiction')}: {quiet.get('rule')} (rules version {quiet.get('version')})."
        )
    for tag in reason.get("adjustments") or []:
        lines.append(ADJUSTMENTS.get(str(tag), str(tag)).capitalize() + ".")
    if not reason.get("adjustments"):
        lines.append("Sent at its scheduled time: nothing moved it.")
    if error:
        lines.append(error)
    return lines


def setting_lines(row: Mapping[str, Any]) -> list[str]:
    """A campaign's sending settings in words, one a line: how often it repeats, what a call says
    and how long it may last, how many at once, retries (what the campaign page shows)."""
    lines = [f"At most {plural(row.get('max_concurrent') or 1, 'send')} at once."]
    retries = row.get("max_retries")
    if retries:
        apart = span(row.get("retry_interval") or 0)
        lines.append(f"A failed send is tried again up to {plural(retries, 'time')}, {apart} apart.")
    rule = row.get("recurrence") or {}
    if rule.get("frequency"):
        frequency = str(rule["frequency"])
        unit = {"daily": "day", "weekly": "week", "monthly": "month"}.get(frequency, frequency)
        every = int(rule.get("interval") or 1)
        repeat = f"Repeats every {unit}" if every == 1 else f"Repeats every {every} {unit}s"
        if rule.get("weekdays"):
            repeat += " on " + ", ".join(str(d).capitalize() for d in rule["weekdays"])
        if rule.get("month_day"):
            repeat += f" on day {rule['month_day']}"
        if rule.get("until"):
            repeat += f", until {rule['until']}"
        if rule.get("count"):
            repeat += f", {plural(rule['count'], 'run')} at most"
        lines.append(repeat + ".")
    voice = row.get("voice") or {}
    if row.get("channel") == "voice":
        if voice.get("opening_message"):
            lines.append(f"Opens with: “{voice['opening_message']}”")
        if voice.get("call_duration_limit"):
            lines.append(f"A call lasts at most {span(voice['call_duration_limit'])}.")
        if voice.get("machine_detection") and voice["machine_detection"] != "off":
            left = "leaves a voicemail" if voice.get("voicemail_message") else "hangs up"
            lines.append(f"Answering machines are detected ({voice['machine_detection']}); on one it {left}.")
    return lines


def who(row: Mapping[str, Any], channel: str) -> str:
    """How a conversation is named: by email address for email, else by phone."""
    if channel == "email":
        return str(row["email"] or row["phone"] or row["contact_id"])
    return str(row["phone"] or row["email"] or row["contact_id"])
