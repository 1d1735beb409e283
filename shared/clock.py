"""The scheduler's clock: the real one, or a simulated one that reads `start` at the real instant
`origin` and runs `rate` times as fast (operators rehearsing a campaign, tests putting the clock
under their control)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def real_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def simulated_clock(start: datetime, rate: float = 1.0, origin: datetime | None = None) -> Clock:
    """A clock that reads `start` at the real instant `origin` (default: now) and advances `rate`
    seconds per real second."""
    anchor = start if start.tzinfo else start.replace(tzinfo=UTC)
    origin_s = origin.timestamp() if origin is not None else time.time()

    def now() -> datetime:
        return anchor + timedelta(seconds=(time.time() - origin_s) * rate)

    return now


def from_settings(start: datetime | None, rate: float, origin: datetime | None = None) -> Clock:
    """The real clock unless a start is set."""
    return real_clock if start is None else simulated_clock(start, rate, origin)
