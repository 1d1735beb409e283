"""PURE: a call's status callback → the change it makes to its delivery (never backwards), and
the words that ask us to stop calling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.deliveries import TWILIO_CALL_FINAL, TWILIO_CALL_RANK, TWILIO_CALL_TRANSIENT
from shared.domain.keywords import OPT_OUT
from shared.domain.retry import next_attempt
from shared.row import Row

#: Campaign states in which a busy or unanswered call is tried again (paused: after resume).
_LIVE = ("scheduled", "running", "paused")


@dataclass(frozen=True)
class CallChange:
    """Columns to update (none: the callback changes nothing), whether the call ended (free its
    slot), the minutes to charge, and why."""

    change: dict[str, Any] = field(default_factory=dict)
    ended: bool = False
    minutes: int = 0
    reason: str = ""


def call_minutes(duration_s: int | None) -> int:
    """Billed minutes of a call that lasted `duration_s` seconds: every started minute."""
    return math.ceil(max(duration_s or 0, 0) / 60)


def _stale(current: Row, call_sid: str | None) -> str | None:
    """Why a callback is not about the delivery's current call, or None when it is."""
    state, provider_id = current["state"], current["provider_id"]
    if state in ("planned", "queued"):
        return f"no call under way (delivery {state})"
    if state == "sending":
        # Being placed: provider_id, if any, is still the previous attempt's call.
        return "a previous attempt's call" if provider_id is not None and call_sid == provider_id else None
    if state == "sent":
        return "another call" if provider_id is not None and call_sid and call_sid != provider_id else None
    return f"delivery already {state}"


def call_status_change(
    current: Row,
    call_sid: str | None,
    status: str,
    duration_s: int | None,
    error_code: str | None,
    now: datetime,
) -> CallChange:
    """What Twilio call `status` does to a delivery in `current` (its state, provider id and status,
    sent/delivered times, attempts, the campaign's retry settings and status).

    Progress (initiated, ringing, in-progress) only records the status; `completed` delivers and
    charges; `busy`/`no-answer` plan another call after `retry_interval` while retries remain;
    `failed`/`canceled` fail; a call never answered is not counted as sent. A status of a lower rank
    than the one recorded changes nothing.
    """
    rank = TWILIO_CALL_RANK.get(status)
    if rank is None:
        return CallChange(reason=f"unknown status {status!r}")
    stale = _stale(current, call_sid)
    if stale:
        return CallChange(reason=stale)
    old = current["provider_status"]
    if old is not None and rank <= TWILIO_CALL_RANK.get(old, -1):
        return CallChange(reason=f"{status} is not after {old}")
    change: dict[str, Any] = {"provider_status": status}
    if status not in TWILIO_CALL_FINAL:
        return CallChange(change, reason="in progress")
    if status == "completed":
        change |= {"state": "delivered", "delivered_at": current["delivered_at"] or now, "error": None}
        if current["sent_at"] is None:
            change["sent_at"] = now
        return CallChange(change, ended=True, minutes=call_minutes(duration_s), reason="answered")
    error = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
    # Never answered: not counted as sent (results' `sent` for calls is those that connected).
    change["sent_at"] = None
    if status in TWILIO_CALL_TRANSIENT:
        if current["campaign_status"] not in _LIVE:
            change |= {"state": "cancelled", "error": f"{error}; campaign {current['campaign_status']}"}
            return CallChange(change, ended=True, reason=f"campaign {current['campaign_status']}")
        step = next_attempt(current["attempts"], current["max_retries"], current["retry_interval"], now, "retry")
        if step.at is not None:
            # Not reached: planned again, and not counted as sent until a call goes out again.
            change |= {"state": "planned", "send_at": step.at, "provider_status": None, "error": error}
            return CallChange(change, ended=True, reason=step.reason)
        change |= {"state": "failed", "failed_at": now, "error": f"{error}; {step.reason}"}
        return CallChange(change, ended=True, reason=step.reason)
    change |= {"state": "failed", "failed_at": now, "error": error}
    return CallChange(change, ended=True, reason=status)


#: Phrases that, anywhere in what the contact says, ask us to stop calling.
STOP_PHRASES = (
    "stop calling",
    "do not call",
    "don't call",
    "dont call",
    "never call",
    "remove me",
    "take me off",
    "unsubscribe",
    "opt me out",
    "opt out",
    "no more calls",
)


def asks_to_stop(speech: str) -> bool:
    """True when the contact asks not to be called again ("stop calling", "do not call", "stop")."""
    text = re.sub(r"\s+", " ", speech.lower().replace("\u2019", "'")).strip(" .!?,")
    return text.upper() in OPT_OUT or any(phrase in text for phrase in STOP_PHRASES)


#: A voice campaign's `machine_detection` settings; `off` (the default) asks Twilio for nothing.
MACHINE_DETECTION = ("off", "hangup", "voicemail")
#: Twilio's `AnsweredBy` values that mean no person is on the line (a fax hangs up in every mode).
MACHINES = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})
FAX = "fax"
#: Every `AnsweredBy` value Twilio's AMD reports (anything else is recorded as `unknown`).
ANSWERED_BY = frozenset({"human", "unknown", FAX, *MACHINES})

CallAction = str  # "converse" | "hang_up" | "leave_message"


def machine_detection(voice: dict[str, Any] | None) -> str:
    """The campaign's `machine_detection` (from its `voice` settings), `off` when unset."""
    mode = (voice or {}).get("machine_detection")
    return mode if mode in MACHINE_DETECTION else "off"


def amd_param(mode: str) -> str | None:
    """Twilio's `MachineDetection` for a campaign's mode. `hangup` uses `Enable`: Twilio answers
    the TwiML request as soon as it knows a machine picked up (the quickest hang-up). `voicemail`
    uses `DetectMessageEnd`: Twilio waits for the greeting to end (the beep, or silence) before it
    asks for TwiML, so the message we <Say> is recorded from its start rather than spoken over the
    greeting. `off` asks for no detection (a human is assumed; no AMD charge, no delay)."""
    return {"hangup": "Enable", "voicemail": "DetectMessageEnd"}.get(mode)


def answered_by(value: str | None) -> str | None:
    """Twilio's `AnsweredBy` as recorded on the delivery (None when Twilio sent none)."""
    if not value:
        return None
    value = value.strip().lower()
    return value if value in ANSWERED_BY else "unknown"


def call_action(mode: str, who: str | None) -> CallAction:
    """What an answered call does: a person (or an undecided detection: `unknown`, or no
    detection) gets the conversation; a fax is hung up on; a machine is hung up on (`hangup`) or
    left the voicemail message (`voicemail`)."""
    if mode == "off" or who in (None, "human", "unknown"):
        return "converse"
    if who in MACHINES and mode == "voicemail":
        return "leave_message"
    return "hang_up"
