"""Legal calling hours: the packaged data table, jurisdiction lookup, and rules in plans."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.quiet_hours import (
    QuietRule,
    jurisdiction_for,
    load_rules,
    parse_rules,
    rule_for,
    us_state_code,
)
from shared.domain.timeplan import Schedule, plan_send
from shared.domain.windows import SendingWindow
from shared.domain.zones import ZoneChoice


def wall(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A naive wall-clock time: naive on purpose, it is read in a zone later."""
    return datetime(y, mo, d, h, mi, s, us)  # noqa: DTZ001


def test_packaged_table_is_versioned_and_every_rule_has_a_source() -> None:
    table = load_rules()
    assert table.version == "2026-12-06"
    assert table.rules["US"].start == 8 * 60
    assert table.rules["US"].end == 21 * 60
    assert "64.1200(c)(1)" in table.rules["US"].source
    for rule in table.rules.values():
        assert rule.version == table.version
        assert rule.source, rule.jurisdiction


@pytest.mark.parametrize(
    ("jurisdiction", "hours"),
    [
        ("US-FL", "08:00-20:00"),
        ("US-OK", "08:00-20:00"),
        ("US-MD", "08:00-20:00"),
        ("US-MS", "08:00-20:00; sun closed"),
        ("US-NJ", "08:00-20:00"),
        ("US-CT", "09:00-20:00"),
        ("US-TX", "09:00-21:00; sun 12:00-21:00"),
        ("CA", "09:00-21:30; sat 10:00-18:00; sun 10:00-18:00"),
        ("AU", "09:00-20:00; sat 09:00-17:00; sun closed"),
    ],
)
def test_narrower_states(jurisdiction: str, hours: str) -> None:
    assert load_rules().rules[jurisdiction].describe() == hours


@pytest.mark.parametrize(
    ("e164", "state", "expected"),
    [
        ("+13055550123", None, "US-FL"),  # Miami: "Florida"
        ("+17865550100", None, "US-FL"),
        ("+12035550123", None, "US-CT"),  # "Connecticut"
        ("+14055550100", None, "US-OK"),
        ("+12015550100", None, "US-NJ"),
        ("+12125550123", None, "US-NY"),  # "New York, NY": the state after the comma
        ("+12065550123", None, "US-WA"),  # "Washington State"
        ("+12025550123", None, "US-DC"),  # "Washington D.C."
        ("+18005550123", None, "US"),  # toll free: only the country is known
        ("+12125550123", "fl", "US-FL"),  # the contact's own state wins over the area code
        ("+12125550123", "Florida", "US-FL"),
        ("+12125550123", "US-CT", "US-CT"),
        ("+12125550123", "Atlantis", "US-NY"),  # unknown state: fall back to the number
        (None, "MD", "US-MD"),  # no phone (email contact) but a US state
        ("+14165550123", None, "CA"),  # Toronto: Canada's rule
        ("+61412345678", None, "AU"),  # an Australian mobile: Australia's rule
        ("+447911123456", None, None),
        ("+917012345678", None, None),
        ("+15555550100", None, None),  # not a valid number
        ("not a number", None, None),
        (None, None, None),
    ],
)
def test_jurisdiction_from_number_or_contact_state(
    e164: str | None, state: str | None, expected: str | None
) -> None:
    assert jurisdiction_for(e164, state) == expected


def test_jurisdiction_is_cached_per_area_code() -> None:
    first = jurisdiction_for("+13055550123")
    # A second number of the same area code gives the same answer (from the area-code cache)
    assert jurisdiction_for("+13055559876") == first == "US-FL"


def test_rule_for_prefers_the_state_and_falls_back_to_the_country() -> None:
    table = load_rules()
    florida = rule_for("US-FL", table)
    assert florida is not None
    assert florida.jurisdiction == "US-FL"
    new_york = rule_for("US-NY", table)
    assert new_york is not None
    assert new_york.jurisdiction == "US"
    assert rule_for("GB", table) is None
    assert rule_for(None, table) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("fl", "FL"),
        ("Florida", "FL"),
        ("US-TX", "TX"),
        ("washington state", "WA"),
        ("Narnia", None),
    ],
)
def test_us_state_codes(value: str, code: str | None) -> None:
    assert us_state_code(value) == code


def test_operators_add_jurisdictions_by_data(tmp_path: Path) -> None:
    # Given an operator's table with a new country and a province inside it
    data = {
        "version": "2027-01-15",
        "rules": [
            {
                "jurisdiction": "CA",
                "start": "09:00",
                "end": "21:30",
                "source": "CRTC UTR, Part III",
            },
            {
                "jurisdiction": "CA-QC",
                "start": "09:00",
                "end": "21:00",
                "days": {"sun": None},
                "source": "x",
            },
        ],
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    # When it is loaded
    table = load_rules(path)
    # Then Canadian numbers are covered, with the province from the contact when given
    assert table.version == "2027-01-15"
    assert jurisdiction_for("+14165550123", None, table) == "CA"
    assert jurisdiction_for("+15145550123", "qc", table) == "CA-QC"
    quebec = rule_for("CA-QC", table)
    assert quebec is not None
    assert quebec.minutes_on(6) is None
    assert jurisdiction_for("+12125550123", None, table) is None  # the US is not in this table


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"jurisdiction": "US", "start": "8:00", "end": "21:00"}],
            r"rules\[0\]\.start: expected a time",
        ),
        (
            [{"jurisdiction": "US", "start": "08:00", "end": "24:30"}],
            r"rules\[0\]\.end: expected a time",
        ),
        (
            [{"jurisdiction": "US", "start": "21:00", "end": "08:00"}],
            r"rules\[0\]: US: hours must satisfy",
        ),
        ([{"start": "08:00", "end": "21:00"}], r"rules\[0\]\.jurisdiction: required"),
        (
            [{"jurisdiction": "US", "start": "08:00", "end": "21:00", "days": {"funday": None}}],
            r"unknown day",
        ),
        (
            [
                {"jurisdiction": "US", "start": "08:00", "end": "21:00"},
                {"jurisdiction": "US-ZZ", "start": "07:00", "end": "20:00"},
            ],
            r"US-ZZ: allows hours that US forbids",
        ),
    ],
)
def test_bad_tables_name_the_entry(rules: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules({"version": "v1", "rules": rules})


def test_a_table_needs_a_version() -> None:
    with pytest.raises(ValueError, match=r"^version: required"):
        parse_rules({"rules": []})


def test_rule_allows_by_weekday() -> None:
    texas = load_rules().rules["US-TX"]
    assert not texas.allows(wall(2026, 6, 7, 11, 59))  # Sunday before noon
    assert texas.allows(wall(2026, 6, 7, 12, 0))
    assert texas.allows(wall(2026, 6, 6, 9, 0))  # Saturday
    assert not texas.allows(wall(2026, 6, 6, 21, 0))


def test_plan_reason_records_rule_and_table_version() -> None:
    # Given a Florida number planned at 07:30 local with the packaged table
    table = load_rules()
    quiet = rule_for(jurisdiction_for("+13055550123"), table)
    plan = plan_send(
        Schedule(wall=wall(2026, 6, 2, 7, 30)),
        ZoneChoice(("America/New_York",), "phone"),
        SendingWindow(),
        quiet,
        datetime(2026, 6, 1, tzinfo=UTC),
    )
    # Then it waits for 08:00 EDT and says which rule and which table version moved it
    assert plan.send_at == datetime(2026, 6, 2, 12, 0, tzinfo=UTC)
    assert plan.reason["quiet_hours"] == {
        "jurisdiction": "US-FL",
        "rule": "08:00-20:00",
        "version": table.version,
    }
    assert plan.reason["adjustments"] == ["quiet_hours_moved"]


def test_rule_is_a_hashable_value() -> None:
    rule = QuietRule("US", 480, 1260, "v1", "src")
    assert rule == QuietRule("US", 480, 1260, "v1", "src")
    assert len({rule, QuietRule("US", 480, 1260, "v1", "src")}) == 1
    assert rule.as_reason() == {"jurisdiction": "US", "rule": "08:00-21:00", "version": "v1"}


def test_the_packaged_us_area_codes_are_the_states_phonenumbers_geocoder_names():
    # The scheduler reads a small packaged table instead of loading the geocoder's data (~100 MB)
    from phonenumbers.geodata import GEOCODE_DATA

    from shared.domain.quiet_hours import _STATE_BY_NAME, US_STATES, _us_area_codes

    named: dict[str, Counter[str]] = {}
    for key, names in GEOCODE_DATA.items():
        if key.startswith("1") and len(key) >= 4:  # "1" + area code (+ more digits: a place in it)
            text = names.get("en", "")
            tail = text.rsplit(", ", 1)[-1]
            state = tail if tail in US_STATES else _STATE_BY_NAME.get(text.lower())
            if state:
                named.setdefault(key[1:4], Counter())[state] += 1
    # an area code lies in one state (the data names another for a stray place or two: the most named wins)
    expected = {npa: states.most_common(1)[0][0] for npa, states in named.items()}
    # (after a phonenumbers upgrade, write `expected` to shared/domain/us_area_codes.json)
    assert dict(_us_area_codes()) == expected
