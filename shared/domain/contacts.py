"""Contact fields, pure: phone (with a fast path for E.164), email, time zone, region, patches.

Every check returns the normalised value or raises ValueError whose text is the reason shown to
the user. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumber

from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.zones import is_valid_zone

#: The built-in contact fields (everything else a caller sends is metadata).
FIELDS = ("first_name", "last_name", "email", "phone", "company", "timezone")
#: Channels a contact can be opted out of.
CHANNELS = ("sms", "email", "voice")
#: Keys that name a contact's opt-outs (the contact API's `opted_out`, the CSV export's
#: `opted_out_<channel>` columns): never metadata, where a template would read one as a variable
#: and a caller might think it had opted someone in or out.
OPT_OUT_KEYS = frozenset({"opted_out", *(f"opted_out_{channel}" for channel in CHANNELS)})
#: Why such a key is refused.
OPT_OUT_KEY_REASON = (
    "names an opt-out, which is no metadata: a contact's opt-outs are changed with PATCH /contacts/{id} "
    '(`"opted_out": {"sms": true}`)'
)
#: Longest value kept in a built-in text field.
MAX_FIELD = 1000

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # the same rule as a campaign's inline contacts
_NANP_TEN = re.compile(r"[2-9][0-9]{9}")
_FORMATTING = str.maketrans("", "", " ()-.")
#: Two-letter region codes phonenumbers knows.
REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    pattern = metadata.national_prefix_for_parsing if metadata else None
    return re.compile(pattern) if pattern else None


#: Each country calling code, as digits, with its national-prefix pattern (None: it has none).
_CODES = {str(code): (code, _national_prefix(code)) for code in COUNTRY_CODE_TO_REGION_CODE}
_POSSIBLE: dict[tuple[int, int], bool] = {}


def _possible_length(country_code: int, length: int) -> bool:
    # Without a national prefix or a leading zero, possibility depends on the length alone.
    known = _POSSIBLE.get((country_code, length))
    if known is None:
        sample = PhoneNumber(country_code=country_code, national_number=int("5" * length))
        known = _POSSIBLE[(country_code, length)] = bool(phonenumbers.is_possible_number(sample))
    return known


def e164(raw: str, region: str | None = None) -> str:
    """`raw` as E.164, or ValueError with the reason.

    Numbers already in E.164, and ten-digit North American numbers read in a +1 region, skip
    the full parse when phonenumbers' own rules would leave them as they are (a known country
    code, no national prefix to strip, no leading zero, a possible length); everything else
    goes through `to_e164`. The unit tests check that both ways give one answer.
    """
    candidate = raw
    if raw[:1] != "+" and region is not None and _nanp(region):
        digits = raw.translate(_FORMATTING)
        if _NANP_TEN.fullmatch(digits):
            candidate = "+1" + digits
    digits = candidate[1:]
    if (
        candidate[:1] == "+"
        and 6 <= len(digits) <= 17
        and digits.isascii()
        and digits.isdigit()
        and digits[0] != "0"
        and _unchanged_by_parsing(digits)
    ):
        return candidate
    try:
        return to_e164(raw, region)
    except InvalidPhone as exc:
        raise ValueError(str(exc)) from None


#: (first four digits, digit count) → `_unchanged_by_parsing`, for the numbers whose answer
#: depends on nothing else: the country code, the national number's first digit and its length.
_SHAPES: dict[tuple[str, int], bool] = {}
_ONE_DIGIT = re.compile(r"[0-9]")


def _unchanged_by_parsing(digits: str) -> bool:
    shape = (digits[:4], len(digits))
    known = _SHAPES.get(shape)
    if known is None:
        known, by_shape = _parsing_keeps(digits)
        if by_shape:
            _SHAPES[shape] = known
    return known


def _parsing_keeps(digits: str) -> tuple[bool, bool]:
    """Whether phonenumbers would leave `+digits` as it is, and whether the answer holds for every
    number of its shape (no national prefix, or a one-digit one, which only the first digit can match)."""
    for size in (1, 2, 3):
        known = _CODES.get(digits[:size])
        if known is not None:
            code, prefix = known
            national = digits[size:]
            keeps = (
                len(national) >= 2
                and national[0] != "0"
                and (prefix is None or prefix.match(national) is None)
                and _possible_length(code, len(national))
            )
            return keeps, prefix is None or _ONE_DIGIT.fullmatch(prefix.pattern) is not None
    return False, True


@functools.lru_cache(maxsize=512)
def _nanp(region: str) -> bool:
    return phonenumbers.country_code_for_region(region.upper()) == 1


def email(raw: str) -> str:
    """A trimmed, lower-cased email address, or ValueError."""
    value = raw.strip().lower()
    if not _EMAIL.fullmatch(value) or len(value) > 320:
        raise ValueError(f"{raw!r} is not a valid email address")
    return value


def timezone(raw: str) -> str:
    """An IANA time zone name, or ValueError."""
    value = raw.strip()
    if not is_valid_zone(value):
        raise ValueError(f"{raw!r} is not an IANA time zone name (e.g. 'America/New_York')")
    return value


def region(raw: str) -> str:
    """A two-letter region code phonenumbers knows (`US`, `GB`), upper-cased, or ValueError."""
    value = raw.strip().upper()
    if value not in REGIONS:
        raise ValueError(f"{raw!r} is not a two-letter country code (e.g. 'US', 'GB', 'IN')")
    return value


def text(raw: str) -> str:
    """A trimmed text field, or ValueError when it is too long."""
    value = raw.strip()
    if len(value) > MAX_FIELD:
        raise ValueError(f"longer than {MAX_FIELD} characters")
    return value


_CHECKS = {"phone": e164, "email": email, "timezone": timezone}


def check_fields(values: Mapping[str, Any], default_region: str | None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Normalise the built-in fields present in `values` (None clears one).

    Returns the normalised fields and every error as `{"field", "reason"}`; a phone without `+`
    is read in `values["country"]`, else `default_region`.
    """
    out: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    hint = default_region
    if values.get("country") is not None:
        try:
            hint = region(str(values["country"]))
        except ValueError as exc:
            errors.append({"field": "country", "reason": str(exc)})
    for name in FIELDS:
        if name not in values:
            continue
        raw = values[name]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            out[name] = None
            continue
        try:
            out[name] = e164(raw.strip(), hint) if name == "phone" else _CHECKS.get(name, text)(raw)
        except ValueError as exc:
            errors.append({"field": name, "reason": str(exc)})
    return out, errors


def opt_out_key_errors(prefix: str, metadata: Mapping[str, Any]) -> list[dict[str, str]]:
    """An error for each key of `metadata` (a contact's extra keys, or its `metadata` object) that
    names an opt-out with a value, as `{"field": prefix + key, "reason"}`; a null, which stores
    nothing (or removes such a key kept from before), is no error."""
    return [
        {"field": f"{prefix}{key}", "reason": OPT_OUT_KEY_REASON}
        for key, value in metadata.items()
        if key in OPT_OUT_KEYS and value is not None
    ]


def merge_metadata(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `patch` merged in (RFC 7396 at the top level: a null removes the key)."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def reachable(fields: Mapping[str, Any]) -> bool:
    """Whether a contact has a phone or an email (one of them is required)."""
    return bool(fields.get("phone") or fields.get("email"))
