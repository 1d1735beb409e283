"""When one contact's message goes out: a schedule read in the contact's zones, held to its window.

Pure: `now` is passed in. Local days are turned into exact UTC stretches once per (zone, date,
hours) and cached, so planning a contact is a few dictionary hits and comparisons; DST gaps,
repeated hours and date-line jumps fall out of the stretches instead of special cases.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime

from shared.domain.quiet_hours import QuietRule
from shared.domain.windows import DAY_SECONDS, SendingWindow
from shared.domain.zones import ZoneChoice, is_valid_zone, zone

#: How far past the requested instant the planner looks for an opening before giving up.
HORIZON_DAYS = 14

_EPOCH = date(1970, 1, 1).toordinal()
#: Local dates lie within this many seconds of UTC (real offsets stay under 16 hours).
_REACH = 16 * 3600
#: Offsets are sampled this often when mapping a local day; two transitions never come closer.
_STEP = 3 * 3600

Stretch = tuple[int, int]  # [start, end) in POSIX seconds


class Unplannable(ValueError):
    """No instant within HORIZON_DAYS satisfies the window and quiet hours in every zone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Schedule:
    """When to send: an aware `instant` (one moment for all), a naive `wall` time, or neither (now).

    A wall time is read in each contact's zone(s), or in `wall_zone` for everyone when it is set.
    """

    instant: datetime | None = None
    wall: datetime | None = None
    wall_zone: str | None = None

    def __post_init__(self) -> None:
        if self.instant is not None and self.wall is not None:
            raise ValueError("schedule: give an instant or a wall time, not both")
        if self.instant is not None and self.instant.utcoffset() is None:
            raise ValueError("schedule: an instant needs a UTC offset")
        if self.wall is not None and self.wall.tzinfo is not None:
            raise ValueError("schedule: a wall time carries no zone or offset")
        if self.wall_zone is not None and (self.wall is None or not is_valid_zone(self.wall_zone)):
            raise ValueError("timezone: wall_zone needs a wall time and a known IANA zone")


@dataclass(frozen=True, slots=True)
class Plan:
    """The instant to send (aware, UTC) and the JSON-able reason recorded on the delivery."""

    send_at: datetime
    reason: dict[str, object]


def plan_send(
    schedule: Schedule,
    zones: ZoneChoice,
    window: SendingWindow,
    quiet: QuietRule | None,
    now: datetime,
) -> Plan:
    """Plan one contact: resolve the schedule, never before `now`, then the first allowed instant.

    Allowed means inside the window and the quiet-hours rule in every one of the contact's zones.
    Raises Unplannable when nothing qualifies within HORIZON_DAYS.
    """
    if now.utcoffset() is None:
        raise ValueError("now: must be timezone-aware")
    names = zones.zones
    # The zone the reason names: the one whose clock set the instant (of several, the last to
    # reach the wall time, or the last whose window or quiet hours opened), else the first.
    label = names[0]
    now_ts = now.timestamp()
    tags: tuple[str, ...] = ()
    if schedule.instant is not None:
        start, start_ts = schedule.instant, schedule.instant.timestamp()
    elif schedule.wall is not None:
        start, start_ts, shifted, read_in = _wall_target(schedule.wall_zone or names, schedule.wall)
        tags = ("dst_gap_shifted",) if shifted else ()
        if schedule.wall_zone is None:
            label = read_in
    else:
        start, start_ts = now, now_ts
    if start_ts < now_ts:
        start, start_ts, label = now, now_ts, names[0]
        tags += ("past_moved_to_now",)
    send_at = start.astimezone(UTC)
    if quiet is not None or not window.is_open_all_week:
        send_ts, moved, opened_in = _settle(names, start_ts, window, quiet)
        if send_ts != start_ts:
            send_at, tags, label = datetime.fromtimestamp(send_ts, UTC), tags + moved, opened_in
    return Plan(
        send_at,
        {
            "zone": label,
            "zones": list(names),
            "zone_source": zones.source,
            "local_send_time": _local_iso(label, send_at),
            "window": window.as_dict(),
            "quiet_hours": None if quiet is None else quiet.as_reason(),
            "adjustments": list(tags),
        },
    )


def resolve_wall(wall: datetime, zone_name: str) -> tuple[datetime, bool]:
    """A naive wall time in a zone as an aware UTC instant, and whether it fell in a DST gap.

    A repeated time (fall back) gives its first occurrence; a skipped one (spring forward, a
    date-line jump) gives the first instant after the gap.
    """
    seconds, shifted = _wall_seconds(zone_name, wall)
    instant = datetime.fromtimestamp(seconds, UTC)
    return (instant, True) if shifted else (instant.replace(microsecond=wall.microsecond), False)


def clear_caches() -> None:
    """Forget every memoised step (for tests and cold benchmarks); results never depend on them."""
    for cached in (_wall_target, _settle, _local_iso_whole, _offsets, _open_stretches, _day_spans):
        cached.cache_clear()


# The memoised steps below are pure; a run plans many contacts with the same wall time, zone,
# window and rule, so most contacts are answered from these caches.


@functools.lru_cache(maxsize=65_536)
def _wall_target(names: str | tuple[str, ...], wall: datetime) -> tuple[datetime, float, bool, str]:
    """The instant a wall time means (the last of several zones to reach it), its POSIX time,
    whether that zone skipped the wall time, and that zone."""
    latest, exact, read_in = -1 << 62, False, ""
    for name in (names,) if isinstance(names, str) else names:
        seconds, shifted = _wall_seconds(name, wall)
        if seconds > latest or (seconds == latest and not shifted):
            latest, exact, read_in = seconds, not shifted, name
    instant = datetime.fromtimestamp(latest, UTC)
    if exact and wall.microsecond:
        micro = wall.microsecond
        return instant.replace(microsecond=micro), (latest * 1_000_000 + micro) / 1_000_000, False, read_in
    return instant, float(latest), not exact, read_in


@functools.lru_cache(maxsize=65_536)
def _settle(
    names: tuple[str, ...], start_ts: float, window: SendingWindow, quiet: QuietRule | None
) -> tuple[int | float, tuple[str, ...], str]:
    """The first allowed instant from `start_ts`, the tags saying why it moved (if it did), and
    the zone whose opening it moved to (the first zone when it did not move)."""
    send_ts, opened_in = _earliest(names, start_ts, _day_spans(window, quiet))
    if send_ts == start_ts:
        return send_ts, (), names[0]
    start = datetime.fromtimestamp(start_ts, UTC)
    return send_ts, _why_moved(start, datetime.fromtimestamp(send_ts, UTC), names, window, quiet), opened_in


def _local_iso(zone_name: str, instant: datetime) -> str:
    if instant.microsecond:
        return instant.astimezone(zone(zone_name)).isoformat()
    return _local_iso_whole(zone_name, int(instant.timestamp()))


@functools.lru_cache(maxsize=65_536)
def _local_iso_whole(zone_name: str, seconds: int) -> str:
    return datetime.fromtimestamp(seconds, zone(zone_name)).isoformat()


def _wall_seconds(zone_name: str, wall: datetime) -> tuple[int, bool]:
    ordinal = wall.toordinal()
    as_utc = (ordinal - _EPOCH) * DAY_SECONDS + wall.hour * 3600 + wall.minute * 60 + wall.second
    stretches = _offsets(zone_name, ordinal)
    for lo, hi, offset in stretches:  # in time order, so a repeated time resolves to fold=0
        if lo <= as_utc - offset < hi:
            return as_utc - offset, False
    # Skipped: the first stretch whose clock starts past the wall time.
    for lo, _, offset in stretches:
        if lo + offset > as_utc:
            return lo, True
    raise AssertionError("a local day is always covered")  # pragma: no cover


@functools.lru_cache(maxsize=16_384)
def _offsets(zone_name: str, ordinal: int) -> tuple[tuple[int, int, int], ...]:
    """Constant-offset `(start, end, offset)` stretches over all instants of local day `ordinal`."""
    tz = zone(zone_name)
    first = (ordinal - _EPOCH) * DAY_SECONDS - _REACH
    last = first + DAY_SECONDS + 2 * _REACH

    def offset_at(ts: int) -> int:
        delta = datetime.fromtimestamp(ts, tz).utcoffset()
        assert delta is not None
        return int(delta.total_seconds())

    stretches: list[tuple[int, int, int]] = []
    begin, current = first, offset_at(first)
    for probe in range(first + _STEP, last + _STEP, _STEP):
        if offset_at(probe) == current:
            continue
        lo, hi = (
            probe - _STEP,
            probe,
        )  # the transition is the first second in (lo, hi] off `current`
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset_at(mid) == current else (lo, mid)
        stretches.append((begin, hi, current))
        begin, current = hi, offset_at(hi)
    stretches.append((begin, last + _STEP, current))
    return tuple(stretches)


#: Distinct per-day spans, interned so the stretch cache keys on a small int, not a nested tuple.
_SPANS: list[tuple[tuple[int, int], ...]] = []
_SPAN_IDS: dict[tuple[tuple[int, int], ...], int] = {}

#: Seven span ids (Monday first); -1 marks a day with no opening at all.
WeekIds = tuple[int, ...]


def _span_id(spans: tuple[tuple[int, int], ...]) -> int:
    if not spans:
        return -1
    if spans not in _SPAN_IDS:
        _SPAN_IDS[spans] = len(_SPANS)
        _SPANS.append(spans)
    return _SPAN_IDS[spans]


@functools.lru_cache(maxsize=65_536)
def _open_stretches(zone_name: str, ordinal: int, span_id: int) -> tuple[Stretch, ...]:
    """The UTC stretches whose local clock reads date `ordinal` and a time inside the spans."""
    midnight = (ordinal - _EPOCH) * DAY_SECONDS
    found: list[Stretch] = []
    for lo, hi, offset in _offsets(zone_name, ordinal):
        for begin, end in _SPANS[span_id]:
            a, b = max(lo, midnight + begin - offset), min(hi, midnight + end - offset)
            if a < b:
                found.append((a, b))
    found.sort()
    merged: list[Stretch] = []
    for a, b in found:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return tuple(merged)


@functools.lru_cache(maxsize=1024)
def _day_spans(window: SendingWindow, quiet: QuietRule | None) -> WeekIds:
    """Per weekday, the seconds of the local day inside both the window and the quiet-hours rule."""
    if quiet is None:
        return tuple(_span_id(spans) for spans in window.spans)
    days: list[int] = []
    for weekday, spans in enumerate(window.spans):
        legal = quiet.minutes_on(weekday)
        if legal is None:
            days.append(-1)
            continue
        lo, hi = legal[0] * 60, legal[1] * 60
        days.append(_span_id(tuple((max(a, lo), min(b, hi)) for a, b in spans if max(a, lo) < min(b, hi))))
    return tuple(days)


def _next_open(zone_name: str, ts: float, days: WeekIds, limit: float) -> float | None:
    """The first instant at or after `ts` (and not after `limit`) that one zone allows."""
    ordinal = _EPOCH + int(ts // DAY_SECONDS) - 1  # a local date is at most a day behind UTC's
    while (ordinal - _EPOCH) * DAY_SECONDS - _REACH <= limit:
        span_id = days[(ordinal - 1) % 7]
        if span_id >= 0:
            for lo, hi in _open_stretches(zone_name, ordinal, span_id):
                if ts < hi:
                    found = max(ts, lo)
                    return found if found <= limit else None
        ordinal += 1
    return None


def _earliest(names: tuple[str, ...], start: float, days: WeekIds) -> tuple[float, str]:
    """The first instant from `start` that every zone allows, and the zone that last moved it:
    move to each zone's next opening in turn until every zone has accepted the same instant
    (moves only go forward, so it ends)."""
    limit = start + HORIZON_DAYS * DAY_SECONDS
    ts, accepted, index, opened_in = start, 0, 0, names[0]
    while accepted < len(names):
        found = _next_open(names[index], ts, days, limit)
        if found is None:
            raise Unplannable(
                f"no instant within {HORIZON_DAYS} days is inside the sending window"
                f" and legal calling hours in {', '.join(names)}"
            )
        if found == ts:
            accepted += 1
        else:
            ts, accepted, opened_in = found, 1, names[index]
        index = (index + 1) % len(names)
    return ts, opened_in


def _why_moved(
    start: datetime,
    send_at: datetime,
    names: tuple[str, ...],
    window: SendingWindow,
    quiet: QuietRule | None,
) -> tuple[str, ...]:
    """Short audit tags for why the instant moved past `start`."""
    tags: list[str] = []
    for name in names:
        local = start.astimezone(zone(name))
        if local.weekday() in window.excluded_days:
            tags.append("excluded_day_skipped")
        elif not window.allows(local):
            tags.append("outside_window_moved")
        elif quiet is not None and not quiet.allows(local):
            tags.append("quiet_hours_moved")
        first, last = local.toordinal(), send_at.astimezone(zone(name)).toordinal()
        if any((day - 1) % 7 in window.excluded_days for day in range(first + 1, last)):
            tags.append("excluded_day_skipped")
    return tuple(dict.fromkeys(tags))
