"""PURE: a provider status callback → the change it makes to a delivery (never backwards)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain.deliveries import TWILIO_SMS_FAILED, TWILIO_SMS_RANK
from shared.row import Row

#: States a status callback may still move (later ones are final for the callback's purposes).
_MOVABLE = ("queued", "sending", "sent")


def sms_status_change(current: Row, status: str, error_code: str | None, now: datetime) -> dict[str, Any]:
    """Columns to update for Twilio `status` on a delivery in `current`; {} when it changes nothing.

    A status of a lower rank than the one recorded (a late `sent` after `delivered`) changes nothing.
    """
    rank = TWILIO_SMS_RANK.get(status)
    if rank is None:
        return {}
    old_rank = TWILIO_SMS_RANK.get(current["provider_status"] or "", -1)
    if rank <= old_rank and current["provider_status"] is not None:
        return {}
    change: dict[str, Any] = {"provider_status": status}
    state = current["state"]
    if status in ("sent", "delivered", "read", *TWILIO_SMS_FAILED) and current["sent_at"] is None:
        change["sent_at"] = now
    if status == "sent" and state in ("queued", "sending"):
        change["state"] = "sent"
    elif status in ("delivered", "read"):
        change["delivered_at"] = current["delivered_at"] or now
        if state in _MOVABLE:
            change["state"] = "delivered"
    elif status in TWILIO_SMS_FAILED and state in _MOVABLE:
        change["state"] = "undelivered"
        change["failed_at"] = now
        change["error"] = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
    return change
