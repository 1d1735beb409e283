"""Campaign results in the seed's shape, folded from delivery counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counts:
    """Counts of a campaign's deliveries, as the database reports them."""

    total: int = 0
    sent: int = 0
    delivered: int = 0
    replied: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    cancelled: int = 0
    undelivered: int = 0
    response_seconds: float | None = None  # mean time from sent to first reply


def format_duration(seconds: float | None) -> str | None:
    """`263` → `"4m 23s"`; hours and days when longer; None stays None."""
    if seconds is None:
        return None
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = " ".join(p for p in parts if p)
    return f"{text} {secs}s".strip() if text else f"{secs}s"


def reply_rate_value(counts: Counts) -> float:
    """Replies per delivered message (per sent one when no delivery receipts came), from 0 to 1."""
    base = counts.delivered or counts.sent
    return counts.replied / base if base else 0.0


def reply_rate(counts: Counts) -> str:
    """`reply_rate_value` for people, as `"29.3%"`."""
    return f"{100.0 * reply_rate_value(counts):.1f}%"


def results(campaign_id: str, status: str, counts: Counts) -> dict[str, Any]:
    """The body of `GET /campaigns/{id}/results`."""
    return {
        "campaign_id": campaign_id,
        "status": status,
        "total_contacts": counts.total,
        "sent": counts.sent,
        "delivered": counts.delivered,
        "replied": counts.replied,
        "failed": counts.failed,
        "pending": counts.pending,
        "skipped": counts.skipped,
        "cancelled": counts.cancelled,
        "undelivered": counts.undelivered,
        "reply_rate": reply_rate(counts),
        "reply_rate_value": round(reply_rate_value(counts), 6),
        "average_response_time": format_duration(counts.response_seconds),
        "average_response_time_seconds": (
            None if counts.response_seconds is None else round(counts.response_seconds, 3)
        ),
    }
