"""The send-time planner, case by case; every expected instant is worked out by hand (UTC)."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.quiet_hours import QuietRule
from shared.domain.recurrence import Recurrence, next_occurrence
from shared.domain.timeplan import Schedule, Unplannable, plan_send, resolve_wall
from shared.domain.windows import SendingWindow
from shared.domain.zones import ZoneChoice, resolve_zones, zones_for_phone


def wall(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A naive wall-clock time: naive on purpose, it is read in a zone later."""
    return datetime(y, mo, d, h, mi, s, us)  # noqa: DTZ001


LAUNCH = datetime(2000, 1, 1, tzinfo=UTC)  # long before every case unless a case says otherwise
OPEN = SendingWindow()
WEEKDAYS_9_17 = SendingWindow.parse(9, 17, ["Saturday", "Sunday"])
FLORIDA = QuietRule("US-FL", 8 * 60, 20 * 60, "2026-11-01", "Fla. Stat. 501.616(6)(a)")


def _z(*names: str) -> ZoneChoice:
    return ZoneChoice(names, "contact")


def _monthly_31st(after: datetime | None) -> datetime:
    found = next_occurrence(Recurrence("monthly", month_day=31), wall(2026, 1, 31, 9, 0), after)
    assert found is not None
    return found.at


@dataclass(frozen=True)
class Case:
    zones: ZoneChoice
    schedule: Schedule
    expected: datetime
    window: SendingWindow = OPEN
    quiet: QuietRule | None = None
    now: datetime = LAUNCH
    adjustments: list[str] = field(default_factory=list)


def _utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


CASES = {
    # New York springs forward 02:00 EST -> 03:00 EDT: 02:30 does not exist -> 03:00 EDT = 07:00Z
    "new_york_gap": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 3, 8, 2, 30)),
        _utc(2026, 3, 8, 7, 0),
        adjustments=["dst_gap_shifted"],
    ),
    # 01:30 happens twice on 2026-11-01; the first (EDT, -4) is used: 05:30Z, sent once
    "new_york_overlap": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 11, 1, 1, 30)),
        _utc(2026, 11, 1, 5, 30),
    ),
    # London 01:00 GMT -> 02:00 BST at 01:00Z; 01:30 is skipped -> 02:00 BST = 01:00Z
    "london_gap": Case(
        _z("Europe/London"),
        Schedule(wall=wall(2026, 3, 29, 1, 30)),
        _utc(2026, 3, 29, 1, 0),
        adjustments=["dst_gap_shifted"],
    ),
    # 01:30 first as BST (+1): 00:30Z
    "london_overlap": Case(
        _z("Europe/London"), Schedule(wall=wall(2026, 10, 25, 1, 30)), _utc(2026, 10, 25, 0, 30)
    ),
    "kolkata_plus_0530": Case(
        _z("Asia/Kolkata"), Schedule(wall=wall(2026, 6, 1, 9, 0)), _utc(2026, 6, 1, 3, 30)
    ),
    "kathmandu_plus_0545": Case(
        _z("Asia/Kathmandu"), Schedule(wall=wall(2026, 6, 1, 9, 0)), _utc(2026, 6, 1, 3, 15)
    ),
    "chatham_winter_plus_1245": Case(
        _z("Pacific/Chatham"), Schedule(wall=wall(2026, 6, 1, 9, 0)), _utc(2026, 5, 31, 20, 15)
    ),
    "chatham_summer_plus_1345": Case(
        _z("Pacific/Chatham"), Schedule(wall=wall(2026, 1, 15, 9, 0)), _utc(2026, 1, 14, 19, 15)
    ),
    # Chatham springs forward 02:45 -> 03:45 (+12:45 -> +13:45) at 14:00Z on 2026-09-26/27
    "chatham_gap": Case(
        _z("Pacific/Chatham"),
        Schedule(wall=wall(2026, 9, 27, 3, 0)),
        _utc(2026, 9, 26, 14, 0),
        adjustments=["dst_gap_shifted"],
    ),
    # Lord Howe moves half an hour: 02:00 +10:30 -> 02:30 +11 on 2026-10-04 (15:30Z the day before)
    "lord_howe_half_hour_gap": Case(
        _z("Australia/Lord_Howe"),
        Schedule(wall=wall(2026, 10, 4, 2, 15)),
        _utc(2026, 10, 3, 15, 30),
        adjustments=["dst_gap_shifted"],
    ),
    # ... and back 02:00 +11 -> 01:30 +10:30 on 2026-04-05: 01:45 first as +11 = 14:45Z
    "lord_howe_half_hour_overlap": Case(
        _z("Australia/Lord_Howe"),
        Schedule(wall=wall(2026, 4, 5, 1, 45)),
        _utc(2026, 4, 4, 14, 45),
    ),
    "apia_plus_13": Case(
        _z("Pacific/Apia"), Schedule(wall=wall(2026, 6, 1, 9, 0)), _utc(2026, 5, 31, 20, 0)
    ),
    "kiritimati_plus_14": Case(
        _z("Pacific/Kiritimati"),
        Schedule(wall=wall(2026, 6, 1, 9, 0)),
        _utc(2026, 5, 31, 19, 0),
    ),
    # Samoa skipped 2011-12-30 crossing the date line (-10 -> +14): first instant after is
    # 2011-12-31 00:00 +14 = 2011-12-30 10:00Z; with a 9-17 window it waits for 09:00 +14
    "apia_skipped_day": Case(
        _z("Pacific/Apia"),
        Schedule(wall=wall(2011, 12, 30, 10, 0)),
        _utc(2011, 12, 30, 19, 0),
        window=SendingWindow.parse(9, 17),
        adjustments=["dst_gap_shifted", "outside_window_moved"],
    ),
    # Friday 18:00 EDT with weekends excluded -> Monday 09:00 EDT = 13:00Z
    "friday_evening_to_monday": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 5, 18, 0)),
        _utc(2026, 6, 8, 13, 0),
        window=WEEKDAYS_9_17,
        adjustments=["outside_window_moved", "excluded_day_skipped"],
    ),
    # Saturday 10:00 EDT -> Monday 09:00 EDT
    "saturday_to_monday": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 6, 10, 0)),
        _utc(2026, 6, 8, 13, 0),
        window=WEEKDAYS_9_17,
        adjustments=["excluded_day_skipped"],
    ),
    # A 20-8 window wraps midnight: noon CDT waits for 20:00 CDT = 01:00Z next day ...
    "wrapping_window_waits_for_evening": Case(
        _z("America/Chicago"),
        Schedule(wall=wall(2026, 6, 3, 12, 0)),
        _utc(2026, 6, 4, 1, 0),
        window=SendingWindow.parse(20, 8),
        adjustments=["outside_window_moved"],
    ),
    # ... and 02:00 CDT is inside it: 07:00Z
    "wrapping_window_small_hours": Case(
        _z("America/Chicago"),
        Schedule(wall=wall(2026, 6, 3, 2, 0)),
        _utc(2026, 6, 3, 7, 0),
        window=SendingWindow.parse(20, 8),
    ),
    # Launched at 11:00 EDT for a 09:00 EDT send: sent now, not skipped
    "past_at_launch_sends_now": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 1, 9, 0)),
        _utc(2026, 6, 1, 15, 0),
        window=SendingWindow.parse(9, 17),
        now=_utc(2026, 6, 1, 15, 0),
        adjustments=["past_moved_to_now"],
    ),
    # Launched at 18:00 EDT: now is outside 9-17, so next morning 09:00 EDT
    "past_at_launch_after_window": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 1, 9, 0)),
        _utc(2026, 6, 2, 13, 0),
        window=SendingWindow.parse(9, 17),
        now=_utc(2026, 6, 1, 22, 0),
        adjustments=["past_moved_to_now", "outside_window_moved"],
    ),
    "florida_0730_to_0800": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 2, 7, 30)),
        _utc(2026, 6, 2, 12, 0),
        quiet=FLORIDA,
        adjustments=["quiet_hours_moved"],
    ),
    "florida_2030_to_next_0800": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 2, 20, 30)),
        _utc(2026, 6, 3, 12, 0),
        quiet=FLORIDA,
        adjustments=["quiet_hours_moved"],
    ),
    # Quiet hours intersect the window: 9-21 window and 8-20 law leave 09:00-20:00
    "window_and_quiet_intersect": Case(
        _z("America/New_York"),
        Schedule(wall=wall(2026, 6, 2, 20, 15)),
        _utc(2026, 6, 3, 13, 0),
        window=SendingWindow.parse(9, 21),
        quiet=FLORIDA,
        adjustments=["quiet_hours_moved"],
    ),
    # +1 605 (South Dakota) spans Denver (MDT -6) and North Dakota/Center (CDT -5). 16:30 wall:
    # 22:30Z in Denver is 17:30 in Center (closed) -> both open at 09:00 MDT next day = 15:00Z
    "two_zone_number": Case(
        resolve_zones(None, "+16055550123", None, "UTC"),
        Schedule(wall=wall(2026, 6, 2, 16, 30)),
        _utc(2026, 6, 3, 15, 0),
        window=SendingWindow.parse(9, 17),
        adjustments=["outside_window_moved"],
    ),
    # 09:00 wall: the later zone to reach it (Denver, 15:00Z) is 10:00 in Center: fine for both
    "two_zone_number_morning": Case(
        resolve_zones(None, "+16055550123", None, "UTC"),
        Schedule(wall=wall(2026, 6, 2, 9, 0)),
        _utc(2026, 6, 2, 15, 0),
        window=SendingWindow.parse(9, 17),
    ),
    # Monthly on the 31st from 2026-01-31 09:00 New York: Feb 28 09:00 EST (14:00Z), Mar 31 EDT
    "monthly_31st_february": Case(
        _z("America/New_York"),
        Schedule(wall=_monthly_31st(wall(2026, 1, 31, 9, 0))),
        _utc(2026, 2, 28, 14, 0),
    ),
    "monthly_31st_back_to_march_31": Case(
        _z("America/New_York"),
        Schedule(wall=_monthly_31st(wall(2026, 2, 28, 9, 0))),
        _utc(2026, 3, 31, 13, 0),
    ),
    # An instant with an offset is one moment for everyone; only the window is local
    "instant_with_offset": Case(
        _z("Asia/Tokyo"),
        Schedule(instant=datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))),
        _utc(2026, 6, 1, 7, 0),
        window=SendingWindow.parse(9, 17),
    ),
    # A wall time read in one named zone for everyone, windows still in the contact's zone
    "named_zone_for_everyone": Case(
        _z("Asia/Kolkata"),
        Schedule(wall=wall(2026, 6, 1, 9, 0), wall_zone="Europe/London"),
        _utc(2026, 6, 1, 8, 0),
        window=SendingWindow.parse(9, 17),
    ),
    "no_schedule_means_now": Case(
        _z("Europe/Berlin"),
        Schedule(),
        _utc(2026, 6, 1, 10, 0),
        window=SendingWindow.parse(9, 17),
        now=_utc(2026, 6, 1, 10, 0),
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_planned_instant(case: Case) -> None:
    plan = plan_send(case.schedule, case.zones, case.window, case.quiet, case.now)
    assert plan.send_at == case.expected
    assert plan.send_at.tzinfo is UTC
    assert plan.reason["adjustments"] == case.adjustments


def test_reason_is_json_and_explains_the_instant() -> None:
    plan = plan_send(
        Schedule(wall=wall(2026, 6, 5, 18, 0)),
        ZoneChoice(("America/New_York",), "phone"),
        WEEKDAYS_9_17,
        FLORIDA,
        LAUNCH,
    )
    assert json.loads(json.dumps(plan.reason)) == {
        "zone": "America/New_York",
        "zones": ["America/New_York"],
        "zone_source": "phone",
        "local_send_time": "2026-06-08T09:00:00-04:00",
        "window": {"start_hour": 9, "end_hour": 17, "excluded_days": ["saturday", "sunday"]},
        "quiet_hours": {"jurisdiction": "US-FL", "rule": "08:00-20:00", "version": "2026-11-01"},
        "adjustments": ["outside_window_moved", "excluded_day_skipped"],
    }


def test_window_and_law_that_never_meet_are_unplannable() -> None:
    with pytest.raises(Unplannable, match="no instant within 14 days"):
        plan_send(Schedule(), _z("America/New_York"), SendingWindow.parse(21, 23), FLORIDA, LAUNCH)


def test_zones_whose_windows_never_overlap_are_unplannable() -> None:
    # 09:00-10:00 is 00:00-01:00Z in Tokyo (+9) and 13:00-14:00Z in New York (EDT, -4)
    window = SendingWindow.parse(9, 10)
    with pytest.raises(Unplannable) as raised:
        plan_send(Schedule(), _z("Asia/Tokyo", "America/New_York"), window, None, LAUNCH)
    assert isinstance(raised.value, ValueError)
    assert "Asia/Tokyo, America/New_York" in raised.value.reason


def test_microseconds_survive_when_nothing_moves() -> None:
    requested = wall(2026, 6, 1, 9, 0, 0, 123456)
    plan = plan_send(Schedule(wall=requested), _z("Asia/Kolkata"), OPEN, None, LAUNCH)
    assert plan.send_at == _utc(2026, 6, 1, 3, 30, 0, 123456)
    assert resolve_wall(requested, "Asia/Kolkata") == (_utc(2026, 6, 1, 3, 30, 0, 123456), False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instant": wall(2026, 1, 1), "wall": None}, "needs a UTC offset"),
        ({"wall": datetime(2026, 1, 1, tzinfo=UTC)}, "carries no zone"),
        ({"instant": _utc(2026, 1, 1), "wall": wall(2026, 1, 1)}, "not both"),
        ({"wall": wall(2026, 1, 1), "wall_zone": "Mars/Olympus"}, "known IANA zone"),
        ({"wall_zone": "Europe/London"}, "needs a wall time"),
    ],
)
def test_schedule_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="now: must be timezone-aware"):
        plan_send(Schedule(), _z("UTC"), OPEN, None, wall(2026, 1, 1))


@pytest.mark.parametrize(
    ("contact_tz", "phone", "campaign_tz", "expected"),
    [
        ("Europe/Paris", "+12125550123", "Asia/Tokyo", ZoneChoice(("Europe/Paris",), "contact")),
        ("Not/AZone", "+12125550123", None, ZoneChoice(("America/New_York",), "phone")),
        # phonenumbers' Choibalsan is Ulaanbaatar now: the zone once
        (None, "+976136234567", None, ZoneChoice(("Asia/Ulaanbaatar",), "phone")),
        (
            None,
            "+79161234567",
            "Asia/Tokyo",
            ZoneChoice(("Asia/Tokyo",), "campaign"),
        ),  # 16 zones: too vague
        (
            None,
            "+18005550123",
            None,
            ZoneChoice(("Asia/Kolkata",), "account"),
        ),  # toll free: country-wide
        (None, "+15555550100", "contact_local", ZoneChoice(("Asia/Kolkata",), "account")),
        (None, None, None, ZoneChoice(("Asia/Kolkata",), "account")),
    ],
)
def test_zone_resolution_order(
    contact_tz: str | None, phone: str | None, campaign_tz: str | None, expected: ZoneChoice
) -> None:

    assert resolve_zones(contact_tz, phone, campaign_tz, "Asia/Kolkata") == expected


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+18762101234", "America/Jamaica"),  # mobiles: phonenumbers gives every +1 zone for these
        ("+12423591234", "America/Nassau"),
        ("+18682911234", "America/Port_of_Spain"),
        ("+12462501234", "America/Barbados"),
        ("+16847331234", "Pacific/Pago_Pago"),
        ("+16846331234", "Pacific/Pago_Pago"),  # a fixed line, as before
        ("+18095551234", "America/Santo_Domingo"),
    ],
)
def test_a_number_of_a_one_zone_nanp_territory_implies_its_zone(phone: str, expected: str) -> None:
    assert zones_for_phone(phone) == (expected,)
    assert resolve_zones(None, phone, None, "Asia/Kolkata") == ZoneChoice((expected,), "phone")


def test_us_and_canadian_numbers_keep_their_area_codes_zones() -> None:
    # an area code spanning zones keeps them all; a toll-free number names no place: the account's
    assert zones_for_phone("+16055550123") == ("America/Denver", "America/North_Dakota/Center")
    assert resolve_zones(None, "+18005550123", None, "Asia/Kolkata") == ZoneChoice(("Asia/Kolkata",), "account")
    assert zones_for_phone("+13065550123") == ("America/Regina",)
    assert zones_for_phone("+18762100") == ()  # too short: Jamaica's prefix alone implies nothing


def test_every_nanp_territory_but_the_us_and_canada_has_one_zone_per_number() -> None:
    import phonenumbers
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        if region in ("US", "CA"):
            continue
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            assert number is not None, (region, kind)
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            assert len(zones_for_phone(e164)) == 1, (region, kind, e164)


def test_a_number_spanning_zones_is_labelled_with_the_zone_whose_clock_set_the_time() -> None:
    # Kiribati: Tarawa +12, Kanton (phonenumbers' Enderbury) +13, Kiritimati +14. 09:00 is last reached
    # in Tarawa (21:00Z), which is 10:00 in Kanton: the reason names Tarawa, at 09:00 on its clock
    zones = resolve_zones(None, "+68675012345", None, "Asia/Kolkata")
    assert set(zones.zones) == {"Pacific/Kanton", "Pacific/Kiritimati", "Pacific/Tarawa"}
    plan = plan_send(Schedule(wall=wall(2027, 1, 12, 9)), zones, SendingWindow.parse(9, 17), None, LAUNCH)
    assert plan.send_at == _utc(2027, 1, 11, 21, 0)
    assert (plan.reason["zone"], plan.reason["local_send_time"]) == ("Pacific/Tarawa", "2027-01-12T09:00:00+12:00")
    # moved by a window opening at 10:00: Tarawa's opening (22:00Z) is the last, so Tarawa again
    plan = plan_send(Schedule(wall=wall(2027, 1, 12, 9)), zones, SendingWindow.parse(10, 17), None, LAUNCH)
    assert plan.send_at == _utc(2027, 1, 11, 22, 0)
    assert (plan.reason["zone"], plan.reason["local_send_time"]) == ("Pacific/Tarawa", "2027-01-12T10:00:00+12:00")
    assert plan.reason["zones"] == list(zones.zones)


def test_an_unknown_account_zone_is_an_error() -> None:
    with pytest.raises(ValueError, match="account_tz"):
        resolve_zones(None, None, None, "Nowhere/Town")


def _free_trailing_digits(pattern: str) -> int:
    """How many final digits a phonenumbers pattern leaves free, whatever branch matches."""
    c: Any = importlib.import_module("re._constants")  # the stdlib's own regex parser
    parser: Any = importlib.import_module("re._parser")

    def free(items: Any) -> int:
        total = 0
        for op, arg in reversed(list(items)):
            if op == c.MAX_REPEAT and arg[0] == arg[1] and list(arg[2]) == [_DIGIT]:
                total += arg[0]
            elif (op, arg) == _DIGIT:
                total += 1
            elif op == c.SUBPATTERN:
                return total + free(arg[-1])
            elif op == c.BRANCH:
                return total + min(free(branch) for branch in arg[1])
            else:
                return total
        return total

    _DIGIT = (c.IN, [(c.CATEGORY, c.CATEGORY_DIGIT)])
    return free(parser.parse(pattern))


def test_north_american_zones_follow_the_first_seven_digits() -> None:
    # zones_for_phone caches NANP numbers by "+1" and seven digits; that is exact only while every
    # pattern of every NANP region leaves the last three digits free. Guard it on each upgrade.
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    kinds = [
        *("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost"),
        *("personal_number", "voip", "pager", "uan", "voicemail"),
    ]
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        for kind in kinds:
            desc = getattr(metadata, kind)
            if desc is not None and desc.national_number_pattern is not None:
                assert _free_trailing_digits(desc.national_number_pattern) >= 3, (region, kind)
    # Barbados: +1 246 522 0xxx is a number, +1 246 522 1xxx is not (the seventh digit decides)
    assert zones_for_phone("+12465220123") != ()
    assert zones_for_phone("+12465221123") == ()
    assert zones_for_phone("+12125550123") == ("America/New_York",)
