"""Time zones: cached lookups, zones implied by a phone number, and which zone a contact gets."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

#: A number whose prefix maps to more zones than this is too vague to plan by (a whole country).
MAX_PHONE_ZONES = 4

#: The NANP regions whose area codes span several zones; phonenumbers' prefix data decides there.
_NANP_SPLIT_REGIONS = frozenset({"US", "CA"})

#: Where a contact's zones came from, in order of preference (recorded in the plan's reason).
ZoneSource = Literal["contact", "phone", "campaign", "account"]


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, memoised (a bare ZoneInfo() call costs ~50x a cache hit).

    Raises ZoneInfoNotFoundError (a KeyError) or ValueError for a name that is not a zone.
    """
    return ZoneInfo(name)


@functools.lru_cache(maxsize=4096)
def is_valid_zone(name: str) -> bool:
    """Whether `name` is an IANA zone known to this machine's tz database."""
    if not name or name != name.strip():
        return False
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zones_for_phone(e164: str) -> tuple[str, ...]:
    """IANA zones phonenumbers implies for an E.164 number; () when unknown or unparseable.

    Several zones come back when the prefix spans them; country-wide lists are returned as they
    are (see `resolve_zones` for when that is too vague). A number of a NANP territory outside
    the US and Canada (Jamaica, the Bahamas, American Samoa...) gets its territory's one zone.
    """
    if len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit():
        # North America: every NANP pattern in phonenumbers' metadata leaves the last three
        # digits free, so validity, type and zone follow the first seven (a unit test holds
        # this against the installed metadata). A million contacts cost a few thousand lookups.
        return _nanp_zones(e164[:9])
    return _zones_cached(e164)


@functools.lru_cache(maxsize=131_072)
def _nanp_zones(first_seven: str) -> tuple[str, ...]:
    return _zones(first_seven + "000")


@functools.lru_cache(maxsize=65_536)
def _zones_cached(e164: str) -> tuple[str, ...]:
    return _zones(e164)


def _zones(e164: str) -> tuple[str, ...]:
    """The uncached lookup (~30 us): parse, check the number type, match the longest prefix."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    names = phone_timezone.time_zones_for_number(number)
    if len(names) > 1 and number.country_code == 1:
        # phonenumbers counts a NANP mobile as non-geographic and answers with every zone of +1;
        # outside the US and Canada an area code is one territory, whose zone its prefix names.
        region = phonenumbers.region_code_for_number(number)
        if region is not None and region not in _NANP_SPLIT_REGIONS:
            names = phone_timezone.time_zones_for_geographical_number(number)
    unknown = phone_timezone.UNKNOWN_TIMEZONE
    return tuple(name for name in names if name != unknown and is_valid_zone(name))


@dataclass(frozen=True, slots=True)
class ZoneChoice:
    """The zone(s) a contact's local time is read in, and where they came from (for the audit)."""

    zones: tuple[str, ...]
    source: ZoneSource

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError("zones: at least one zone is required")


def resolve_zones(
    contact_tz: str | None,
    phone_e164: str | None,
    campaign_tz: str | None,
    account_tz: str,
) -> ZoneChoice:
    """Pick a contact's zones: contact's tz, else the phone's zones, else campaign, else account.

    All of a number's zones are kept when its prefix spans a few; more than MAX_PHONE_ZONES (a
    country-level guess) falls through. Unknown names fall through too ("contact_local" included).
    """
    if contact_tz and is_valid_zone(contact_tz):
        return ZoneChoice((contact_tz,), "contact")
    if phone_e164:
        implied = zones_for_phone(phone_e164)
        if 0 < len(implied) <= MAX_PHONE_ZONES:
            return ZoneChoice(implied, "phone")
    if campaign_tz and is_valid_zone(campaign_tz):
        return ZoneChoice((campaign_tz,), "campaign")
    if not is_valid_zone(account_tz):
        raise ValueError(f"account_tz: unknown time zone {account_tz!r}")
    return ZoneChoice((account_tz,), "account")
