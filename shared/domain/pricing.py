"""Cost estimates: SMS segments, per-channel unit prices."""

from __future__ import annotations

from decimal import Decimal

from shared.row import Row

#: GSM 03.38's basic character set (one septet each) and its extension table (two: an escape
#: and the character), which Twilio sends as GSM-7.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_GSM7 = _GSM7_BASIC | _GSM7_EXTENSION


#: A call's length when the campaign sets no limit (CAMPAIGNS_CALL_TIME_LIMIT's default).
DEFAULT_CALL_SECONDS = 300


def sms_segments(text: str) -> int:
    """Segments an SMS of `text` takes, as carriers count them: in GSM-7, 160 septets alone or 153 a
    segment (an extension character such as `€` or `[` takes two, never split between segments);
    else in UCS-2, 70 UTF-16 units alone or 67 a segment (a character beyond the BMP, an emoji,
    takes two, never split)."""
    chars = set(text)
    if chars <= _GSM7:
        wide = chars & _GSM7_EXTENSION
        single, multi = 160, 153
    else:
        wide = {ch for ch in chars if ord(ch) > 0xFFFF}
        single, multi = 70, 67
    if len(text) + sum(text.count(ch) for ch in wide) <= single:  # the common case: one segment
        return 1
    sizes = [2 if ch in wide else 1 for ch in text]
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments


def estimate(
    channel: str,
    contacts: int,
    prices: dict[str, Decimal],
    *,
    template: str | None = None,
    call_minutes: int = 1,
) -> Decimal:
    """What sending a campaign to `contacts` contacts may cost at most."""
    if channel == "sms":
        return prices["sms"] * sms_segments(template or "") * contacts
    if channel == "email":
        return prices["email"] * contacts
    return prices["voice_minute"] * max(call_minutes, 1) * contacts


def estimate_run(campaign: Row, account: Row) -> Decimal:
    """The most one run of `campaign` may cost at the account's prices."""
    prices = {
        "sms": account["price_sms"],
        "email": account["price_email"],
        "voice_minute": account["price_voice_minute"],
    }
    minutes = -(-int((campaign["voice"] or {}).get("call_duration_limit") or DEFAULT_CALL_SECONDS) // 60)
    return estimate(
        campaign["channel"],
        campaign["total_contacts"],
        prices,
        template=campaign["message_template"],
        call_minutes=minutes,
    )
