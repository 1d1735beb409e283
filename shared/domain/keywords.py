"""Keywords: opt-out, opt-in and help, matched on the whole message as carriers do. A keyword is
no reply to the campaign: it is not counted in `replied`, nor answered by the agent."""

from __future__ import annotations

import re
from typing import Literal

Keyword = Literal["stop", "start", "help"]

#: CTIA and Twilio's defaults (REVOKE and OPTOUT since 2025-04-29), and the FCC's per-se revocations.
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})

#: What each keyword answers (one confirmation text is allowed after an opt-out).
REPLIES: dict[Keyword, str] = {
    "stop": "You have been unsubscribed and will receive no more messages. Reply START to resubscribe.",
    "start": "You have been resubscribed. Reply STOP to unsubscribe.",
    "help": "Reply STOP to unsubscribe, START to resubscribe.",
}


def classify(body: str, channel: str = "sms") -> Keyword | None:
    """The keyword the whole message is (any case, surrounding spaces and punctuation ignored). By
    email only an opt-out is one: START and HELP are SMS's, and an email of just "Yes" or "Info"
    is a person answering."""
    text = re.sub(r"[\s.!]+$", "", re.sub(r"\s+", " ", body.strip())).upper()
    if text in OPT_OUT:
        return "stop"
    if channel != "sms":
        return None
    if text in OPT_IN:
        return "start"
    if text in HELP:
        return "help"
    return None
