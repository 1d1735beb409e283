"""The circuit breaker: a campaign whose sends fail, bounce or draw opt-outs above its thresholds
pauses itself before it harms its sender's reputation.

The window is the campaign's sends finished since its launch or its last resume; the breaker looks
once at least `min_sends` of them have finished. Rates:
- `failure_rate`: failed / finished (a provider refused the send, or it failed for good);
- `bounce_rate`: undelivered / accepted (an email bounce, a carrier failure, of the sends a
  provider accepted);
- `opt_out_rate`: opt-outs / accepted (a STOP or an unsubscribe answering one of its messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CODES = ("failure_rate", "bounce_rate", "opt_out_rate")


@dataclass(frozen=True)
class Thresholds:
    """A campaign's thresholds; `enabled` False turns the breaker off."""

    failure_rate: float
    opt_out_rate: float
    bounce_rate: float
    min_sends: int
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The thresholds as the API shows them."""
        return {
            "enabled": self.enabled,
            "failure_rate": self.failure_rate,
            "opt_out_rate": self.opt_out_rate,
            "bounce_rate": self.bounce_rate,
            "min_sends": self.min_sends,
        }


def thresholds(stored: dict[str, Any] | None, defaults: Thresholds) -> Thresholds:
    """A campaign's stored `circuit_breaker` (None: the defaults; a partial one: the rest from them)."""
    given = stored or {}
    return Thresholds(
        failure_rate=float(given.get("failure_rate", defaults.failure_rate)),
        opt_out_rate=float(given.get("opt_out_rate", defaults.opt_out_rate)),
        bounce_rate=float(given.get("bounce_rate", defaults.bounce_rate)),
        min_sends=int(given.get("min_sends", defaults.min_sends)),
        enabled=bool(given.get("enabled", defaults.enabled)),
    )


@dataclass(frozen=True)
class Window:
    """A campaign's figures since its window opened."""

    finished: int  # sends that reached an outcome: accepted by a provider, or failed
    failed: int
    accepted: int  # sends a provider accepted (sent, delivered or undelivered since)
    undelivered: int
    opt_outs: int


def trip(limits: Thresholds, window: Window) -> dict[str, Any] | None:
    """The `paused_reason` when a rate of the window is above its threshold (the first in the order
    failure, bounce, opt-out), else None; nothing before `min_sends` sends have finished."""
    if not limits.enabled or window.finished < max(limits.min_sends, 1):
        return None
    rates = {
        "failure_rate": (window.failed / window.finished, limits.failure_rate),
        "bounce_rate": (window.undelivered / window.accepted if window.accepted else 0.0, limits.bounce_rate),
        "opt_out_rate": (window.opt_outs / window.accepted if window.accepted else 0.0, limits.opt_out_rate),
    }
    for code in CODES:
        value, threshold = rates[code]
        if value > threshold:
            return {"code": code, "value": round(value, 4), "threshold": threshold, "window": window.finished}
    return None
