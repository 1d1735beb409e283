"""Sending windows: the local hours and weekdays a campaign may send in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

#: Weekday names, Monday = 0 as in `datetime.weekday()`.
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

#: Seconds in a (wall-clock) day.
DAY_SECONDS = 86_400

#: Per weekday, the allowed `(start, end)` seconds of the local day, end exclusive.
DaySpans = tuple[tuple[tuple[int, int], ...], ...]


def parse_weekday(value: object, field_name: str) -> int:
    """Read a day name in any case ("Saturday", "sat", "SUNDAY", "thurs") as Monday=0..Sunday=6.

    Any unambiguous prefix of three letters or more is accepted; the ValueError names `field_name`.
    """
    if isinstance(value, str):
        name = value.strip().lower()
        if len(name) >= 3:
            for index, day in enumerate(DAY_NAMES):
                if day.startswith(name):
                    return index
    raise ValueError(f"{field_name}: unknown day {value!r}")


@dataclass(frozen=True, slots=True)
class SendingWindow:
    """Local hours `start_hour` (inclusive) to `end_hour` (exclusive, 24 allowed), minus weekdays.

    `start_hour > end_hour` wraps midnight (20-8 means 20:00-24:00 and 00:00-08:00). None means the
    day's edge; a window with neither bound is open all day.
    """

    start_hour: int | None = None
    end_hour: int | None = None
    excluded_days: frozenset[int] = frozenset()
    spans: DaySpans = field(init=False, repr=False, compare=False, hash=False)
    day_names: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        start, end = self.start_hour, self.end_hour
        if start is not None and (isinstance(start, bool) or not 0 <= start <= 23):
            raise ValueError("start_hour: must be 0..23")
        if end is not None and (isinstance(end, bool) or not 0 <= end <= 24):
            raise ValueError("end_hour: must be 0..24")
        lo = 0 if start is None else start
        hi = 24 if end is None else end
        if lo == hi:
            raise ValueError("end_hour: must differ from start_hour (the window would be empty)")
        if any(not 0 <= day <= 6 for day in self.excluded_days):
            raise ValueError("excluded_days: days are 0 (Monday) .. 6 (Sunday)")
        if len(self.excluded_days) >= 7:
            raise ValueError("excluded_days: cannot exclude every day of the week")
        hours: tuple[tuple[int, int], ...]
        if lo < hi:
            hours = ((lo * 3600, hi * 3600),)
        else:  # wraps midnight; an end of 0 leaves only the evening part
            hours = ((0, hi * 3600), (lo * 3600, DAY_SECONDS)) if hi else ((lo * 3600, DAY_SECONDS),)
        spans = tuple(() if day in self.excluded_days else hours for day in range(7))
        object.__setattr__(self, "spans", spans)
        object.__setattr__(self, "day_names", tuple(DAY_NAMES[day] for day in sorted(self.excluded_days)))

    @classmethod
    def parse(
        cls,
        start_hour: int | None = None,
        end_hour: int | None = None,
        excluded_days: Iterable[str] | None = None,
    ) -> SendingWindow:
        """Build a window from API values; day names in any case. ValueError names the field."""
        for name, value in (("start_hour", start_hour), ("end_hour", end_hour)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name}: must be a whole hour")
        if isinstance(excluded_days, str):
            raise ValueError("excluded_days: must be a list of day names")
        days = frozenset(parse_weekday(day, "excluded_days") for day in excluded_days or ())
        return cls(start_hour, end_hour, days)

    @property
    def is_open_all_week(self) -> bool:
        """True when the window never holds a send back."""
        return self.start_hour is None and self.end_hour is None and not self.excluded_days

    def allows(self, local_dt: datetime) -> bool:
        """Whether a local wall-clock time falls inside the window (weekday and hour)."""
        second = local_dt.hour * 3600 + local_dt.minute * 60 + local_dt.second
        return any(lo <= second < hi for lo, hi in self.spans[local_dt.weekday()])

    def as_dict(self) -> dict[str, object]:
        """The window as API-shaped JSON (day names in lower case, Monday first)."""
        return {
            "start_hour": self.start_hour,
            "end_hour": self.end_hour,
            "excluded_days": list(self.day_names),
        }


#: The window that never holds a send back.
ALWAYS_OPEN = SendingWindow()
