"""Time zones: cached lookups, zones implied by a phone number, and which zone a contact gets."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

#: A number whose prefix maps to more zones than this is too vague to plan by (a whole country).
MAX_PHONE_ZONES = 4

#: The NANP regions whose area codes span several zones; phonenumbers' prefix data decides there.
_NANP_SPLIT_REGIONS = frozenset({"US", "CA"})

#: Where a contact's zones came from, in order of preference (recorded in the plan's reason).
ZoneSource = Literal["contact", "phone", "campaign", "account"]

#: Files of a tz database that load as zones but name none: the host's own setting (`localtime`),
#: a placeholder (`Factory`), a template for TZ strings (`posixrules`), and the trees `posix/`
#: (the zones again) and `right/` (clocks that count leap seconds, which no clock in a city does).
_NOT_ZONES: Final = frozenset({"localtime", "Factory", "posixrules"})
_NOT_ZONE_TREES: Final = ("posix/", "right/")

#: The current names of the zones phonenumbers still gives under an old one. Generated once from
#: tzdata 2025b and phonenumbers 9.0: the names of /usr/share/zoneinfo/tzdata.zi's links
#: (`L <target> <link>`) that phonenumbers' timezone data (`phonenumbers.timezone.TIMEZONE_DATA`)
#: uses and zone.tab does not list, each to its target; but where that target is another country's
#: zone (the tz database links zones whose clocks agree since 1970), to the link's own country's
#: zone in zone.tab (Africa/Asmera is Eritrea's Africa/Asmara, not Kenya's Africa/Nairobi). The
#: links zone.tab lists (Europe/Bratislava, Arctic/Longyearbyen...) are their countries' current
#: names, kept. A unit test checks the rule against the installed data.
CURRENT_NAMES: Final = {
    "Africa/Asmera": "Africa/Asmara",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Godthab": "America/Nuuk",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Choibalsan": "Asia/Ulaanbaatar",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon",
    "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Enderbury": "Pacific/Kanton",
    "Pacific/Ponape": "Pacific/Pohnpei",
    "Pacific/Truk": "Pacific/Chuuk",
}


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, memoised (a bare ZoneInfo() call costs ~50x a cache hit).

    Raises ZoneInfoNotFoundError (a KeyError) or ValueError for a name that is not a zone.
    """
    return ZoneInfo(name)


@functools.cache
def zone_names() -> frozenset[str]:
    """Every IANA zone name this machine's tz database knows, the old link names (`US/Eastern`,
    `Asia/Calcutta`) included, and none of the files that only load as one (`_NOT_ZONES`)."""
    return frozenset(
        name for name in available_timezones() if name not in _NOT_ZONES and not name.startswith(_NOT_ZONE_TREES)
    )


def is_valid_zone(name: str) -> bool:
    """Whether `name` is an IANA zone name (the one check of every zone given or stored)."""
    return name in zone_names()


def zones_for_phone(e164: str) -> tuple[str, ...]:
    """IANA zones phonenumbers implies for an E.164 number, by their current names (`CURRENT_NAMES`:
    an Indian number's is Asia/Kolkata, not Asia/Calcutta); () when unknown or unparseable.

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
    current = (CURRENT_NAMES.get(name, name) for name in names if name != phone_timezone.UNKNOWN_TIMEZONE)
    return tuple(name for name in dict.fromkeys(current) if is_valid_zone(name))


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
