"""Recurring campaigns: daily, weekly or monthly runs in wall-clock time, bounded by until/count.

Occurrences are naive wall times; the planner reads them in each contact's zone (DST-safe there).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from shared.domain.windows import DAY_NAMES, parse_weekday

Frequency = Literal["daily", "weekly", "monthly"]
_FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekly", "monthly")
#: The last day a run may fall on, a year before the calendar's end (9999-12-31), so that planning
#: a run (its contacts' zones, a window or quiet hours days ahead) stays inside it: a rule recurs no
#: further, whatever its interval.
LAST_RUN_DAY = date(9998, 12, 31)


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Every `interval` days/weeks/months from the first run, on `weekdays` (weekly) or `month_day`.

    Empty weekdays / no month_day mean the first run's own weekday / day of month. A month_day past
    the month's end falls on its last day (31 -> Feb 28/29, then back to Mar 31).
    """

    frequency: Frequency
    interval: int = 1
    weekdays: frozenset[int] = frozenset()
    month_day: int | None = None
    until: date | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.frequency not in _FREQUENCIES:
            raise ValueError("frequency: must be daily, weekly or monthly")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError("interval: must be a whole number >= 1")
        if any(not 0 <= day <= 6 for day in self.weekdays):
            raise ValueError("weekdays: days are 0 (Monday) .. 6 (Sunday)")
        if self.weekdays and self.frequency != "weekly":
            raise ValueError("weekdays: only for a weekly recurrence")
        if self.month_day is not None and (self.frequency != "monthly" or not 1 <= self.month_day <= 31):
            raise ValueError("month_day: 1..31, only for a monthly recurrence")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise ValueError("count: must be a whole number >= 1")

    @classmethod
    def parse(cls, value: Mapping[str, object] | str) -> Recurrence:
        """Read the API shape: "weekly", or {"frequency", "interval", "weekdays"|"days",
        "month_day"|"day_of_month", "until": "YYYY-MM-DD", "count"}. ValueError names the field."""
        if isinstance(value, str):
            value = {"frequency": value}
        if not isinstance(value, Mapping):
            raise ValueError("recurrence: must be 'daily', 'weekly', 'monthly' or an object")
        frequency = str(value.get("frequency") or value.get("type") or "").strip().lower()
        if frequency not in _FREQUENCIES:
            raise ValueError(f"frequency: must be daily, weekly or monthly, got {frequency or None!r}")
        days = value.get("weekdays", value.get("days"))
        if days is not None and (isinstance(days, str) or not isinstance(days, list | tuple)):
            raise ValueError("weekdays: must be a list of day names")
        return cls(
            frequency=frequency,
            interval=_whole(value.get("interval", 1), "interval"),
            weekdays=frozenset(parse_weekday(day, "weekdays") for day in days or ()),
            month_day=_optional_whole(value.get("month_day", value.get("day_of_month")), "month_day"),
            until=_date(value.get("until"), "until"),
            count=_optional_whole(value.get("count"), "count"),
        )

    @classmethod
    def problems(cls, value: Mapping[str, object] | str) -> list[str]:
        """Every problem `parse` finds in `value`, "field: reason" each: each field is read on its
        own beside the frequency (`parse` stops at the first), so one answer can name them all."""
        try:
            cls.parse(value)
        except ValueError as exc:
            first = str(exc)
        else:
            return []
        if isinstance(value, str) or not isinstance(value, Mapping):
            return [first]
        found: list[str] = []
        frequency = value.get("frequency", value.get("type"))
        try:
            cls.parse({"frequency": frequency})
        except ValueError as exc:
            found.append(str(exc))
            frequency = None
        fields = {"interval": "daily", "weekdays": "weekly", "days": "weekly", "month_day": "monthly",
                  "day_of_month": "monthly", "until": "daily", "count": "daily"}  # fmt: skip
        for name, fits in fields.items():
            if name in value:
                try:
                    cls.parse({"frequency": frequency or fits, name: value[name]})
                except ValueError as exc:
                    found.append(str(exc))
        return list(dict.fromkeys(found)) or [first]

    def as_dict(self) -> dict[str, object]:
        """The rule as API-shaped JSON."""
        return {
            "frequency": self.frequency,
            "interval": self.interval,
            "weekdays": [DAY_NAMES[day] for day in sorted(self.weekdays)],
            "month_day": self.month_day,
            "until": None if self.until is None else self.until.isoformat(),
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One run of a recurring campaign: its wall time and its 0-based number."""

    at: datetime
    index: int


def next_occurrence(rule: Recurrence, first: datetime, after: datetime | None = None) -> Occurrence | None:
    """The first occurrence strictly after `after` (or the very first), None once until/count end
    (or past LAST_RUN_DAY).

    `first` is the campaign's first scheduled wall time; it is a run only if it fits the rule.
    """
    if first.tzinfo is not None or (after is not None and after.tzinfo is not None):
        raise ValueError("recurrence: first and after are naive wall-clock times")
    period, index = _start_period(rule, first, after)
    while True:
        try:
            dates = _dates_in_period(rule, first.date(), period)
        except (OverflowError, ValueError):  # the period starts past the calendar's last year
            return None
        for day in dates:
            if day > LAST_RUN_DAY or (rule.until is not None and day > rule.until):
                return None
            if rule.count is not None and index >= rule.count:
                return None
            at = datetime.combine(day, first.time())
            if after is None or at > after:
                return Occurrence(at, index)
            index += 1
        period += 1


def occurrences(rule: Recurrence, first: datetime, limit: int | None = None) -> Iterator[Occurrence]:
    """The occurrences in order, at most `limit` of them (the rule's until/count always apply)."""
    found = next_occurrence(rule, first)
    produced = 0
    while found is not None and (limit is None or produced < limit):
        yield found
        produced += 1
        found = next_occurrence(rule, first, found.at)


def _weekdays(rule: Recurrence, first: date) -> list[int]:
    return sorted(rule.weekdays) if rule.weekdays else [first.weekday()]


def _dates_in_period(rule: Recurrence, first: date, period: int) -> list[date]:
    """The dates a period holds, on or after `first`, in order."""
    if rule.frequency == "daily":
        return [first + timedelta(days=period * rule.interval)]
    if rule.frequency == "weekly":
        monday = first - timedelta(days=first.weekday()) + timedelta(weeks=period * rule.interval)
        days = (monday + timedelta(days=weekday) for weekday in _weekdays(rule, first))
        return [day for day in days if day >= first]
    months = first.year * 12 + first.month - 1 + period * rule.interval
    year, month = divmod(months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    day = date(year, month + 1, min(rule.month_day or first.day, last))
    return [day] if day >= first else []


def _start_period(rule: Recurrence, first: datetime, after: datetime | None) -> tuple[int, int]:
    """Jump to the period holding `after` (no walk from the start) and count the runs before it."""
    if after is None or after < first:
        return 0, 0
    start, target = first.date(), after.date()
    if rule.frequency == "daily":
        period = (target - start).days // rule.interval
        return period, period
    if rule.frequency == "weekly":
        monday = start - timedelta(days=start.weekday())
        period = (target - monday).days // (7 * rule.interval)
        if period == 0:
            return 0, 0
        in_first = len(_dates_in_period(rule, start, 0))
        return period, in_first + (period - 1) * len(_weekdays(rule, start))
    elapsed = (target.year - start.year) * 12 + target.month - start.month
    period = elapsed // rule.interval
    if period == 0:
        return 0, 0
    return period, period - (0 if _dates_in_period(rule, start, 0) else 1)


def _whole(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field_name}: must be a whole number")
    return value


def _optional_whole(value: object, field_name: str) -> int | None:
    return None if value is None else _whole(value, field_name)


def _date(value: object, field_name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise ValueError(f"{field_name}: expected a date 'YYYY-MM-DD', got {value!r}")
