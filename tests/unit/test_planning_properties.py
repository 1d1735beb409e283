"""Properties of the planner over random zones, windows, excluded days, quiet hours and schedules.

The oracle below reads local time with plain zoneinfo and the hours with plain arithmetic, so it
shares nothing with the planner's cached UTC stretches. Every rule boundary (whole or half local
hours, offsets in 15-minute steps, transitions after 2015 on 15-minute UTC marks) lies on a
15-minute UTC grid, so checking `start` and the grid points proves the planned instant earliest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import timeplan
from shared.domain.quiet_hours import QuietRule, load_rules
from shared.domain.timeplan import HORIZON_DAYS, Schedule, Unplannable, plan_send, resolve_wall
from shared.domain.windows import SendingWindow
from shared.domain.zones import ZoneChoice


def wall(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A naive wall-clock time: naive on purpose, it is read in a zone later."""
    return datetime(y, mo, d, h, mi, s, us)  # noqa: DTZ001


ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",  # -03:30 / -02:30
    "America/Santiago",  # DST changes at midnight
    "Europe/London",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Asia/Tehran",  # +03:30
    "Australia/Lord_Howe",  # 30-minute DST
    "Australia/Adelaide",  # +09:30 / +10:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # +13, west of the date line
    "Pacific/Kiritimati",  # +14
    "Pacific/Marquesas",  # -09:30
    "Pacific/Honolulu",
    "UTC",
]
GRID = timedelta(minutes=15)
STATE_RULES = [load_rules().rules[name] for name in ("US", "US-CT", "US-TX", "US-MS", "US-RI")]


@st.composite
def windows(draw: st.DrawFn) -> SendingWindow:
    start = draw(st.none() | st.integers(0, 23))
    end = draw(st.none() | st.integers(0, 24).filter(lambda e: e != (start or 0)))
    excluded = draw(st.frozensets(st.integers(0, 6), max_size=6))
    return SendingWindow(start, end, excluded)


@st.composite
def quiet_rules(draw: st.DrawFn) -> QuietRule | None:
    kind = draw(st.sampled_from(["none", "table", "random"]))
    if kind == "none":
        return None
    if kind == "table":
        return draw(st.sampled_from(STATE_RULES))
    start = draw(st.integers(0, 46)) * 30
    end = draw(st.integers(start // 30 + 1, 48)) * 30
    return QuietRule("XX", start, end, "test")


#: Days with DST changes in the zones above, so that examples crowd around the hard cases.
TRANSITION_DAYS = [
    wall(2026, 3, 8),
    wall(2026, 11, 1),  # United States
    wall(2026, 3, 29),
    wall(2026, 10, 25),  # Europe
    wall(2026, 4, 5),
    wall(2026, 10, 4),  # Lord Howe, Adelaide (and Chatham, Santiago in April)
    wall(2026, 9, 6),
    wall(2026, 9, 27),  # Santiago, Chatham
    wall(2021, 3, 22),
    wall(2021, 9, 22),  # Tehran
]
moments = st.one_of(
    st.datetimes(wall(2016, 1, 1), wall(2034, 12, 31)),
    st.builds(
        lambda day, minutes: day + timedelta(minutes=minutes),
        st.sampled_from(TRANSITION_DAYS),
        st.integers(-36 * 4, 36 * 4).map(lambda quarters: quarters * 15),
    ),
)
schedules = st.one_of(
    st.builds(Schedule),
    st.builds(Schedule, instant=moments.map(lambda d: d.replace(tzinfo=UTC))),
    st.builds(Schedule, wall=moments),
    st.builds(Schedule, wall=moments, wall_zone=st.sampled_from(ZONES)),
)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(tuple)
nows = moments.map(lambda d: d.replace(tzinfo=UTC))


def _in_window(local: datetime, window: SendingWindow) -> bool:
    if local.weekday() in window.excluded_days:
        return False
    lo = 0 if window.start_hour is None else window.start_hour
    hi = 24 if window.end_hour is None else window.end_hour
    return lo <= local.hour < hi if lo < hi else (local.hour >= lo or local.hour < hi)


def _in_law(local: datetime, quiet: QuietRule | None) -> bool:
    if quiet is None:
        return True
    span = quiet.days[local.weekday()] if quiet.days else (quiet.start, quiet.end)
    return span is not None and span[0] <= local.hour * 60 + local.minute < span[1]


def _allowed(
    instant: datetime, names: tuple[str, ...], window: SendingWindow, quiet: QuietRule | None
) -> bool:
    for name in names:
        local = instant.astimezone(ZoneInfo(name))
        if not (_in_window(local, window) and _in_law(local, quiet)):
            return False
    return True


def _requested(schedule: Schedule, names: tuple[str, ...], now: datetime) -> datetime:
    if schedule.instant is not None:
        return schedule.instant
    if schedule.wall is not None:
        zones = (schedule.wall_zone,) if schedule.wall_zone else names
        return max(resolve_wall(schedule.wall, name)[0] for name in zones)
    return now


def _probes(start: datetime, end: datetime) -> list[datetime]:
    """`start` and every 15-minute UTC mark after it, up to `end` (exclusive)."""
    first = datetime.fromtimestamp((int(start.timestamp()) // 900 + 1) * 900, UTC)
    points = [start] if start < end else []
    while first < end:
        points.append(first)
        first += GRID
    return points


@settings(max_examples=250, deadline=None)
@given(names=zone_sets, window=windows(), quiet=quiet_rules(), schedule=schedules, now=nows)
def test_planned_instant_is_allowed_earliest_and_never_before_now(
    names: tuple[str, ...],
    window: SendingWindow,
    quiet: QuietRule | None,
    schedule: Schedule,
    now: datetime,
) -> None:
    zones = ZoneChoice(names, "contact")
    start = max(_requested(schedule, names, now), now)
    try:
        plan = plan_send(schedule, zones, window, quiet, now)
    except Unplannable:
        # Then truly nothing in the horizon is allowed in every zone
        horizon = _probes(start, start + timedelta(days=HORIZON_DAYS))
        assert not any(_allowed(point, names, window, quiet) for point in horizon)
        return
    assert plan.send_at >= now
    assert plan.send_at >= start
    assert _allowed(plan.send_at, names, window, quiet)
    assert not any(_allowed(point, names, window, quiet) for point in _probes(start, plan.send_at))


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(ZONES), window=windows(), schedule=schedules, now=nows)
def test_one_zone_with_an_open_day_is_always_plannable(
    name: str, window: SendingWindow, schedule: Schedule, now: datetime
) -> None:
    plan = plan_send(schedule, ZoneChoice((name,), "phone"), window, None, now)
    local = plan.send_at.astimezone(ZoneInfo(name))
    assert local.weekday() not in window.excluded_days
    assert _in_window(local, window)
    assert plan.reason["local_send_time"] == local.isoformat()


@settings(max_examples=100, deadline=None)
@given(names=zone_sets, window=windows(), quiet=quiet_rules(), schedule=schedules, now=nows)
def test_planning_is_deterministic_whatever_the_caches_hold(
    names: tuple[str, ...],
    window: SendingWindow,
    quiet: QuietRule | None,
    schedule: Schedule,
    now: datetime,
) -> None:
    zones = ZoneChoice(names, "contact")

    def plan() -> object:
        try:
            return plan_send(schedule, zones, window, quiet, now)
        except Unplannable as exc:
            return exc.reason

    warm = plan()
    assert plan() == warm
    timeplan.clear_caches()
    assert plan() == warm


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(ZONES), wall=moments)
def test_a_wall_time_is_sent_exactly_once(name: str, wall: datetime) -> None:
    # The instant is the first with that local reading, or the first after a skipped stretch
    instant, shifted = resolve_wall(wall, name)
    local = instant.astimezone(ZoneInfo(name)).replace(tzinfo=None)
    if shifted:
        assert local > wall
        assert (instant - timedelta(seconds=1)).astimezone(ZoneInfo(name)).replace(
            tzinfo=None
        ) < wall
    else:
        assert local == wall
        # A repeated reading comes back one DST shift later; none of them reads `wall` earlier
        for shift in (timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2)):
            assert (instant - shift).astimezone(ZoneInfo(name)).replace(tzinfo=None) != wall
