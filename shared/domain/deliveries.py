"""Delivery states, provider statuses mapped onto them, and which way they may move."""

from __future__ import annotations

#: Deliveries still to be sent: a campaign's run is complete when none is left.
OPEN: tuple[str, ...] = ("planned", "queued", "sending")
#: Every final state.
FINAL: tuple[str, ...] = ("sent", "delivered", "undelivered", "failed", "cancelled", "skipped")

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
