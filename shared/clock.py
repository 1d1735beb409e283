"""The scheduler's clock: the real one, or a simulated one that starts at a given instant and runs
at a given rate (operators rehearsing a campaign, tests putting the clock under their control)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def real_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def simulated_clock(start: datetime, rate: float = 1.0) -> Clock:
    """A clock that reads `start` now and advances `rate` seconds per real second."""
    origin = time.monotonic()
    anchor = start if start.tzinfo else start.replace(tzinfo=UTC)

    def now() -> datetime:
        return anchor + timedelta(seconds=(time.monotonic() - origin) * rate)

    return now


def from_settings(start: datetime | None, rate: float) -> Clock:
    """The real clock unless a start is set."""
    return real_clock if start is None else simulated_clock(start, rate)
