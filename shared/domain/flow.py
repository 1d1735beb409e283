"""PURE: how much of a campaign to release into its dispatch queue, so that a campaign never has
more work waiting there than it can start soon, and the queue interleaves every campaign's work.

A campaign may have waiting (released, not yet claimed by a dispatcher) what it would start in
`horizon_s` seconds at the rate it has been starting sends, and never less than twice its
`max_concurrent` (so that a dispatcher always has its next sends in hand when room comes free).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import TypeVar

T = TypeVar("T")

#: The most a campaign may have waiting, whatever its rate.
MAX_WAITING = 20_000
#: Weight of the newest measurement in the start-rate average.
_SMOOTHING = 0.5


@dataclass(frozen=True)
class Rate:
    """How fast a campaign has been starting sends: its `started` counter at `at` and the smoothed
    rate (per second) measured so far."""

    started: int
    at: float
    per_s: float = 0.0

    def after(self, started: int, at: float) -> Rate:
        """The rate once the counter reads `started` at `at` (seconds, monotonic)."""
        elapsed = at - self.at
        if elapsed <= 0:
            return self
        measured = max(0, started - self.started) / elapsed
        return Rate(started, at, _SMOOTHING * measured + (1 - _SMOOTHING) * self.per_s)


def credit(max_concurrent: int, waiting: int, rate_per_s: float, horizon_s: float) -> int:
    """How many more deliveries to release now for a campaign with `waiting` in its queue."""
    target = max(2 * max_concurrent, math.ceil(rate_per_s * horizon_s))
    return max(0, min(target, MAX_WAITING) - waiting)


def commands(ids: Sequence[T], campaign_of: Sequence[str], size: int) -> list[tuple[str, list[T]]]:
    """Group released deliveries into commands of up to `size` of one campaign each, in an order
    that takes one command of each campaign in turn, so that no campaign's work queues up behind
    another's."""
    by_campaign: dict[str, list[T]] = {}
    for item, campaign_id in zip(ids, campaign_of, strict=True):
        by_campaign.setdefault(campaign_id, []).append(item)
    chunks: list[list[tuple[str, list[T]]]] = [
        [(campaign_id, items[k : k + size]) for k in range(0, len(items), size)]
        for campaign_id, items in by_campaign.items()
    ]
    return [command for turn in zip_longest(*chunks) for command in turn if command is not None]
