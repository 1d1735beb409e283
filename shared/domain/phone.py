"""Phone numbers: parse and store in E.164 (phonenumbers)."""

from __future__ import annotations

import functools

import phonenumbers


class InvalidPhone(ValueError):
    """Not a phone number in E.164 (or in the given region's format)."""


@functools.lru_cache(maxsize=65536)
def to_e164(raw: str, region: str | None = None) -> str:
    """`raw` in E.164 (`+14155550123`); a number without `+` needs `region` (e.g. `"US"`)."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not text.startswith("+"):
            raise InvalidPhone(
                f"{raw!r} has no country code: write it as +<country code><number>, or give the country "
                "to read it in (e.g. 'US')"
            ) from exc
        raise InvalidPhone(f"{raw!r} is not a valid E.164 phone number ({exc._msg})") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid E.164 phone number (wrong length for its country)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
