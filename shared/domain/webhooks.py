"""Signed outbound webhooks, as Stripe and Svix do them: the events an endpoint may ask for, the
`Campaigns-Signature` header, and when a failed delivery is tried again."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

#: Every event an endpoint may subscribe to (`"*"`: all of them).
EVENTS = (
    "campaign.launched",
    "campaign.paused",
    "campaign.resumed",
    "campaign.completed",
    "campaign.failed",
    "campaign.cancelled",
    "delivery.sent",
    "delivery.delivered",
    "delivery.failed",
    "delivery.undelivered",
    "reply.received",
    "contact.opted_out",
)
ALL = "*"
HEADER = "Campaigns-Signature"


def new_secret() -> str:
    """A signing secret: `whsec_` and 32 random bytes, URL-safe."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Campaigns-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """Whether `header` signs `body` under `secret`, made within `tolerance` seconds of `now` (what a
    receiver does; the README shows the same in a few lines)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def unknown_events(events: list[str]) -> list[str]:
    """The names in `events` that are no event (nor `"*"`)."""
    return [e for e in events if e != ALL and e not in EVENTS]


def retry_delay(failures: int, base_s: float, max_s: float) -> timedelta:
    """How long after its `failures`-th failed attempt a delivery is tried again: `base_s`, doubling
    each time, at most `max_s` (5 s, 10 s, 20 s … 1 h with the defaults)."""
    return timedelta(seconds=min(base_s * 2 ** max(failures - 1, 0), max_s))


def span(seconds: float) -> str:
    """A length of time as people say it, in its largest whole unit: `20 s`, `90 s`, `5 min`,
    `2 h`, `1 day`, `3 days` (a fraction of a second stays: `0.5 s`)."""
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
    return f"{seconds:g} s"


def disabled_reason(disable_after_s: float, error: str) -> str:
    """Why an endpoint that has failed for `disable_after_s` seconds (CAMPAIGNS_WEBHOOK_DISABLE_AFTER)
    without a success was disabled, naming that time and its last failure."""
    return f"disabled after failing for {span(disable_after_s)}: {error}"
