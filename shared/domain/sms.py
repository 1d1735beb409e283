"""PURE: how long an SMS may be. Twilio refuses a `Body` over 1,600 characters (error 21617,
"message body exceeds the 1600 character limit"): a campaign's text that long is refused or
failed before it reaches Twilio, and an agent's reply is cut to fit.

Characters are counted as UTF-16 units, an emoji (beyond the Basic Multilingual Plane) two: Twilio
warns that such characters reach the limit sooner, and the segments count them so
(`pricing.sms_segments`). For text without them it is the plain count."""

from __future__ import annotations

#: The most characters one SMS body may hold (Twilio's limit, across its segments).
MAX_CHARS = 1600
#: What ends a reply cut to fit: three GSM-7 dots (a "…" would make a GSM-7 reply UCS-2, and more than
#: double its segments).
ELLIPSIS = "..."


def length(text: str) -> int:
    """`text`'s length toward the limit: its UTF-16 units (an emoji two)."""
    return len(text.encode("utf-16-le")) // 2


def template_too_long(written: str) -> str | None:
    """Why a template that writes `written` with every variable empty can never go as an SMS (its
    own text is already too long for any contact), or None."""
    if length(written) <= MAX_CHARS:
        return None
    return (
        f"an SMS holds at most {MAX_CHARS:,} characters; this template writes {length(written):,} without its variables"
    )


def message_too_long(text: str) -> str | None:
    """Why the message rendered for a contact cannot go as an SMS, or None when it fits."""
    if length(text) <= MAX_CHARS:
        return None
    return f"the rendered message is {length(text):,} characters; an SMS holds at most {MAX_CHARS:,}"


def fit(text: str) -> str:
    """`text` as one SMS: as it is when it fits, else cut to `MAX_CHARS` ending with "..." (never
    within a character)."""
    if length(text) <= MAX_CHARS:
        return text
    room, kept = MAX_CHARS - length(ELLIPSIS), 0
    for char in text:
        room -= length(char)
        if room < 0:
            break
        kept += 1
    return text[:kept] + ELLIPSIS
