"""Retry or give up: provider failures sorted into transient, permanent and opt-out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Verdict = Literal["retry", "fail", "opt_out"]

#: Twilio error codes that mean the recipient opted out (21610) or blocked us (30004).
TWILIO_OPT_OUT = frozenset({21610, 30004})
#: Twilio error codes that no retry mends: invalid/unreachable/landline numbers, filtered content.
TWILIO_PERMANENT = frozenset({21211, 21212, 21214, 21217, 21408, 21612, 21614, 21635, 30005, 30006, 30007})
#: Twilio error codes worth another try: queue overflow, unreachable handset, unknown error.
TWILIO_TRANSIENT = frozenset({20429, 30001, 30003, 30008, 30017})


def classify_twilio(http_status: int | None, code: int | None) -> Verdict:
    """What to do after Twilio refused a request (`http_status` None: no answer at all)."""
    if code in TWILIO_OPT_OUT:
        return "opt_out"
    if code in TWILIO_PERMANENT:
        return "fail"
    if code in TWILIO_TRANSIENT or http_status is None or http_status == 429 or http_status >= 500:
        return "retry"
    return "fail"


@dataclass(frozen=True)
class Next:
    """When to try again, or None to give up."""

    at: datetime | None
    reason: str


def next_attempt(attempts: int, max_retries: int, interval_s: int, now: datetime, verdict: Verdict) -> Next:
    """After `attempts` tries, a retry at `now + interval` while retries remain; else give up."""
    if verdict != "retry":
        return Next(None, "permanent failure")
    if attempts > max_retries:
        return Next(None, f"gave up after {attempts} attempts")
    return Next(now + timedelta(seconds=interval_s), f"retry {attempts} of {max_retries}")
