"""Cost estimates: SMS segments, per-channel unit prices."""

from __future__ import annotations

from decimal import Decimal

from shared.row import Row

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


#: A call's length when the campaign sets no limit (CAMPAIGNS_CALL_TIME_LIMIT's default).
DEFAULT_CALL_SECONDS = 300


def sms_segments(text: str) -> int:
    """Segments an SMS of `text` takes: 160/153 GSM-7 characters, or 70/67 UCS-2 ones."""
    gsm = all(ch in _GSM7 for ch in text)
    single, multi = (160, 153) if gsm else (70, 67)
    length = len(text)
    return 1 if length <= single else -(-length // multi)


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
