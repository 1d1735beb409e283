"""Delivery states, provider statuses mapped onto them, and which way they may move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.row import Row

#: Deliveries still to be sent: a campaign's run is complete when none is left.
OPEN: tuple[str, ...] = ("planned", "queued", "sending")
#: Every final state.
FINAL: tuple[str, ...] = ("sent", "delivered", "undelivered", "failed", "cancelled", "skipped")
#: Every state, in the order a delivery goes through them.
STATES: tuple[str, ...] = (*OPEN, *FINAL)

#: Rank of each Twilio message status; a callback never moves a delivery to a lower rank.
TWILIO_SMS_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
}
#: Twilio statuses that mean the message did not reach the handset.
TWILIO_SMS_FAILED = frozenset({"undelivered", "failed", "canceled"})

#: Rank of each Twilio call status within one call; a callback never moves a call to a lower rank.
TWILIO_CALL_RANK: dict[str, int] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "failed": 4,
    "canceled": 4,
}
#: Call statuses that end a call, and those of them worth calling again.
TWILIO_CALL_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
TWILIO_CALL_TRANSIENT = frozenset({"busy", "no-answer"})


#: States a status callback may still move (later ones are final for the callback's purposes).
_MOVABLE = ("queued", "sending", "sent")


def sms_status_change(current: Row, status: str, error_code: str | None, now: datetime) -> dict[str, Any]:
    """Columns to update for Twilio `status` on a delivery in `current`; {} when it changes nothing.

    A status of a lower rank than the one recorded (a late `sent` after `delivered`) changes nothing;
    nor does an intermediate one that moves neither the state nor a time (`sent` for a delivery
    already recorded as sent): `provider_status` keeps the last status that did.
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
    if set(change) == {"provider_status"} and rank < TWILIO_SMS_RANK["delivered"]:
        # A step on the way (sending, sent) that moves neither the state nor a time: not worth a
        # write a message (Twilio's `sent` comes after our own record of the send, every time)
        return {}
    return change


#: The columns a status callback may change, in the order `fold_sms_statuses` gives them.
SMS_STATUS_COLUMNS = ("state", "provider_status", "sent_at", "delivered_at", "failed_at", "error", "provider_id")


def fold_sms_statuses(
    current: dict[str, dict[str, Any]],
    callbacks: list[tuple[str, str | None, str, str | None]],
    now: datetime,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Apply status callbacks, in the order they came, to the deliveries they are about.

    `current`: delivery id → its row (the columns of SMS_STATUS_COLUMNS); `callbacks`: (delivery
    id, Twilio sid, status, error code). Returns what each callback did (`applied`, `stale`: it
    changed nothing, or `unknown_delivery`) and the new rows of the deliveries that changed.
    """
    results: list[str] = []
    changed: dict[str, dict[str, Any]] = {}
    for delivery_id, sid, status, error_code in callbacks:
        row = changed.get(delivery_id) or current.get(delivery_id)
        if row is None:
            results.append("unknown_delivery")
            continue
        change = sms_status_change(row, status, error_code, now)
        if sid and row["provider_id"] is None:
            change["provider_id"] = sid
        if not change:
            results.append("stale")
            continue
        changed[delivery_id] = {**row, **change}
        results.append("applied")
    return results, changed
