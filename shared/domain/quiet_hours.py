"""Legal calling hours per jurisdiction, read from a versioned data table (quiet_hours.json).

Operators add or narrow jurisdictions by editing the data; `jurisdiction_for` says which applies.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import phonenumbers

from shared.domain.windows import parse_weekday

# fmt: off
#: Two-letter codes of the US states, DC and territories that have their own numbering plan area.
US_STATES: Mapping[str, str] = MappingProxyType({
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
})
# fmt: on
_STATE_BY_NAME = {name.lower(): code for code, name in US_STATES.items()} | {
    "washington state": "WA",  # phonenumbers' geocoder spellings
    "washington d.c.": "DC",
}


@dataclass(frozen=True, slots=True)
class QuietRule:
    """Allowed local hours for one jurisdiction: minutes after midnight, `end` exclusive.

    `days` optionally gives each weekday (Monday first) its own `(start, end)`; None = closed.
    """

    jurisdiction: str
    start: int
    end: int
    version: str
    source: str = ""
    days: tuple[tuple[int, int] | None, ...] = ()
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spans = self.days or ((self.start, self.end),)
        if self.days and len(self.days) != 7:
            raise ValueError("days: needs one entry per weekday")
        for span in spans:
            if span is not None and not 0 <= span[0] < span[1] <= 1440:
                raise ValueError(f"{self.jurisdiction}: hours must satisfy 00:00 <= start < end <= 24:00")
        text = f"{_hhmm(self.start)}-{_hhmm(self.end)}"
        for day, span in zip(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), self.days, strict=False):
            if span != (self.start, self.end):
                text += f"; {day} " + ("closed" if span is None else f"{_hhmm(span[0])}-{_hhmm(span[1])}")
        object.__setattr__(self, "text", text)

    def minutes_on(self, weekday: int) -> tuple[int, int] | None:
        """Allowed `(start, end)` minutes on a weekday (Monday=0); None when nothing is allowed."""
        return self.days[weekday] if self.days else (self.start, self.end)

    def allows(self, local_dt: datetime) -> bool:
        """Whether a local wall-clock time is inside the legal hours."""
        span = self.minutes_on(local_dt.weekday())
        return span is not None and span[0] <= local_dt.hour * 60 + local_dt.minute < span[1]

    def describe(self) -> str:
        """Short text such as "08:00-20:00" or "08:00-20:00; sun closed" for the audit trail."""
        return self.text

    def as_reason(self) -> dict[str, object]:
        """The JSON the planner records: jurisdiction, rule text and data-table version."""
        return {"jurisdiction": self.jurisdiction, "rule": self.text, "version": self.version}


@dataclass(frozen=True, slots=True)
class QuietTable:
    """A loaded data table: its version and its rules by jurisdiction ("US", "US-FL")."""

    version: str
    rules: Mapping[str, QuietRule]
    countries: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "countries", frozenset(j.split("-", 1)[0] for j in self.rules))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(value: object, where: str) -> int:
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and value.replace(":", "").isdigit():
        hours, minutes = int(value[:2]), int(value[3:])
        if minutes < 60 and hours * 60 + minutes <= 1440:
            return hours * 60 + minutes
    raise ValueError(f"{where}: expected a time 'HH:MM' between 00:00 and 24:00, got {value!r}")


def parse_rules(data: Mapping[str, object]) -> QuietTable:
    """Validate a decoded table; a ValueError names the faulty entry and field."""
    version = data.get("version")
    entries = data.get("rules")
    if not isinstance(version, str) or not version:
        raise ValueError("version: required (e.g. '2026-11-01')")
    if not isinstance(entries, list):
        raise ValueError("rules: must be a list")
    rules: dict[str, QuietRule] = {}
    for index, entry in enumerate(entries):
        where = f"rules[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("jurisdiction"), str):
            raise ValueError(f"{where}.jurisdiction: required")
        name = entry["jurisdiction"].strip().upper()
        start = _minutes(entry.get("start"), f"{where}.start")
        end = _minutes(entry.get("end"), f"{where}.end")
        overrides = entry.get("days") or {}
        if not isinstance(overrides, dict):
            raise ValueError(f"{where}.days: must map day names to ['HH:MM', 'HH:MM'] or null")
        days: list[tuple[int, int] | None] = [(start, end)] * 7
        for day_name, span in overrides.items():
            day = parse_weekday(day_name, f"{where}.days")
            if span is None:
                days[day] = None
            elif isinstance(span, list) and len(span) == 2:
                days[day] = (_minutes(span[0], f"{where}.days"), _minutes(span[1], f"{where}.days"))
            else:
                raise ValueError(f"{where}.days.{day_name}: must be ['HH:MM', 'HH:MM'] or null")
        source = str(entry.get("source", ""))
        try:
            rules[name] = QuietRule(name, start, end, version, source, tuple(days) if overrides else ())
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    for rule in rules.values():
        _check_inside_country(rule, rules.get(rule.jurisdiction.split("-", 1)[0]))
    return QuietTable(version, MappingProxyType(rules))


def _check_inside_country(rule: QuietRule, country: QuietRule | None) -> None:
    if country is None or country is rule:
        return
    for day in range(7):
        inner, outer = rule.minutes_on(day), country.minutes_on(day)
        if inner is not None and (outer is None or inner[0] < outer[0] or inner[1] > outer[1]):
            raise ValueError(f"{rule.jurisdiction}: allows hours that {country.jurisdiction} forbids")


@functools.cache
def _packaged() -> QuietTable:
    text = resources.files("shared.domain").joinpath("quiet_hours.json").read_text("utf-8")
    return parse_rules(json.loads(text))


def load_rules(path: str | Path | None = None) -> QuietTable:
    """Load the packaged table (cached), or an operator's JSON file at `path`."""
    if path is None:
        return _packaged()
    return parse_rules(json.loads(Path(path).read_text("utf-8")))


def rule_for(jurisdiction: str | None, rules: QuietTable) -> QuietRule | None:
    """The rule for "US-FL" if the table has one, else its country's ("US"), else None."""
    if not jurisdiction:
        return None
    found = rules.rules.get(jurisdiction)
    if found is None and "-" in jurisdiction:
        found = rules.rules.get(jurisdiction.split("-", 1)[0])
    return found


def us_state_code(value: str) -> str | None:
    """Normalise "fl", "Florida", "US-FL" or "Washington State" to "FL"; None when unknown."""
    text = value.strip()
    upper = text.upper().removeprefix("US-")
    if upper in US_STATES:
        return upper
    return _STATE_BY_NAME.get(text.lower())


#: NANP area code -> jurisdiction ("US-FL", "US", "CA", "PR"); filled from valid numbers only.
_NPA_JURISDICTION: dict[str, str] = {}


@functools.cache
def _us_area_codes() -> Mapping[str, str]:
    """US area code -> state code, packaged (`us_area_codes.json`): the states phonenumbers'
    geocoder names for each area code, extracted once (its data module alone takes about 100 MB of
    memory; tests/unit/test_quiet_hours.py checks the table against it)."""
    text = resources.files("shared.domain").joinpath("us_area_codes.json").read_text("utf-8")
    return MappingProxyType(json.loads(text))


def _nanp_jurisdiction(e164: str, number: phonenumbers.PhoneNumber | None) -> str | None:
    # The area code fixes both the NANP country and the US state, so one lookup serves the area.
    npa = e164[2:5]
    cached = _NPA_JURISDICTION.get(npa)
    if cached is not None:
        return cached
    if number is None or not phonenumbers.is_valid_number(number):
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        return None
    found = region
    if region == "US":
        state = _us_area_codes().get(npa)
        found = f"US-{state}" if state else "US"
    _NPA_JURISDICTION[npa] = found
    return found


def _region_of(e164: str) -> str | None:
    number: phonenumbers.PhoneNumber | None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if e164.startswith("+1") and len(e164) == 12:
        return _nanp_jurisdiction(e164, number)
    return phonenumbers.region_code_for_number(number) if phonenumbers.is_valid_number(number) else None


def jurisdiction_for(e164: str | None, contact_state: str | None = None, rules: QuietTable | None = None) -> str | None:
    """Where a contact's quiet hours come from: "US-FL", "US", or None outside covered countries.

    A recognised US state on the contact wins (the stricter reading); else the number's area code.
    """
    table = _packaged() if rules is None else rules
    state = us_state_code(contact_state) if contact_state else None
    if state and "US" in table.countries:
        return f"US-{state}"
    if not e164 or not e164.startswith(_calling_codes(table.countries)):
        return None
    hit = _NPA_JURISDICTION.get(e164[2:5]) if e164.startswith("+1") and len(e164) == 12 else None
    found = hit or _region_of(e164)
    if found is None:
        return None
    country = found.split("-", 1)[0]
    if country not in table.countries:
        return None
    if contact_state and country != "US" and "-" not in found:
        return f"{country}-{contact_state.strip().upper()}"
    return found


@functools.lru_cache(maxsize=64)
def _calling_codes(countries: frozenset[str]) -> tuple[str, ...]:
    codes = (phonenumbers.country_code_for_region(region) for region in countries)
    return tuple(f"+{code}" for code in codes if code)
