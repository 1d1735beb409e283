"""Sending windows: parsing API values (day names, hours) and which local times they allow."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.domain.windows import SendingWindow, parse_weekday


def wall(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A naive wall-clock time: naive on purpose, it is read in a zone later."""
    return datetime(y, mo, d, h, mi, s, us)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Saturday", 5),
        ("sat", 5),
        ("SUNDAY", 6),
        ("  monday ", 0),
        ("Tue", 1),
        ("tues", 1),
        ("THURS", 3),
        ("wednesday", 2),
        ("fri", 4),
    ],
)
def test_day_names_in_any_case_and_short_forms(name: str, expected: int) -> None:
    assert parse_weekday(name, "excluded_days") == expected


@pytest.mark.parametrize("name", ["Funday", "", "mo", "s", "saturdays", "7", 5, None])
def test_unknown_day_names_name_the_field(name: object) -> None:
    with pytest.raises(ValueError, match=r"^excluded_days: unknown day"):
        parse_weekday(name, "excluded_days")


def test_parse_reports_the_bad_day_verbatim() -> None:
    with pytest.raises(ValueError, match=r"^excluded_days: unknown day 'Funday'$"):
        SendingWindow.parse(9, 17, ["Saturday", "Funday"])


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (24, 8, r"^start_hour: must be 0\.\.23$"),
        (-1, 8, r"^start_hour: must be 0\.\.23$"),
        (8, 25, r"^end_hour: must be 0\.\.24$"),
        (9, 9, r"^end_hour: must differ from start_hour"),
        (0, 0, r"^end_hour: must differ from start_hour"),
        (None, 0, r"^end_hour: must differ from start_hour"),
        (9.5, 17, r"^start_hour: must be a whole hour$"),
        (9, "17", r"^end_hour: must be a whole hour$"),
        (True, 17, r"^start_hour: must be a whole hour$"),
    ],
)
def test_bad_hours_name_the_field(start: object, end: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SendingWindow.parse(start, end, None)  # type: ignore[arg-type]


def test_excluding_every_day_is_refused() -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    with pytest.raises(ValueError, match=r"^excluded_days: cannot exclude every day"):
        SendingWindow.parse(9, 17, every_day)


def test_a_single_string_is_not_a_list_of_days() -> None:
    with pytest.raises(ValueError, match=r"^excluded_days: must be a list"):
        SendingWindow.parse(9, 17, "Saturday")


@pytest.mark.parametrize(
    ("start", "end", "allowed", "refused"),
    [
        (9, 17, [9, 12, 16], [0, 8, 17, 23]),
        (20, 8, [20, 23, 0, 7], [8, 12, 19]),  # wraps midnight
        (0, 24, list(range(24)), []),
        (18, 24, [18, 23], [0, 17]),
        (22, 0, [22, 23], [0, 12, 21]),  # an end of 0 is midnight
        (None, 6, [0, 5], [6, 23]),
        (6, None, [6, 23], [0, 5]),
        (None, None, list(range(24)), []),
    ],
)
def test_allows_hours(
    start: int | None, end: int | None, allowed: list[int], refused: list[int]
) -> None:

    # Given a window (2026-06-03 is a Wednesday, nothing excluded)
    window = SendingWindow.parse(start, end, None)
    # Then exactly the hours inside it are allowed, the end hour excluded
    for hour in allowed:
        assert window.allows(wall(2026, 6, 3, hour, 59, 59)), hour
    for hour in refused:
        assert not window.allows(wall(2026, 6, 3, hour, 0)), hour


def test_excluded_days_use_the_local_calendar_day() -> None:
    window = SendingWindow.parse(20, 8, ["Saturday"])
    assert window.allows(wall(2026, 6, 5, 23, 0))  # Friday night
    assert not window.allows(wall(2026, 6, 6, 2, 0))  # Saturday small hours
    assert not window.allows(wall(2026, 6, 6, 21, 0))  # Saturday night
    assert window.allows(wall(2026, 6, 7, 1, 0))  # Sunday small hours


def test_as_dict_is_api_shaped_and_equal_windows_compare_equal() -> None:
    window = SendingWindow.parse(9, 17, ["SUNDAY", "sat"])
    assert window.as_dict() == {
        "start_hour": 9,
        "end_hour": 17,
        "excluded_days": ["saturday", "sunday"],
    }
    assert window == SendingWindow.parse(9, 17, ["saturday", "sunday"])
    assert hash(window) == hash(SendingWindow(9, 17, frozenset({5, 6})))
    assert SendingWindow().is_open_all_week
    assert not window.is_open_all_week
