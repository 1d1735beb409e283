"""Recurring campaigns: parsing the rule, the run after the current one, until/count, month ends."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.db.deliveries import PLAN_COLUMNS
from shared.domain.recurrence import Occurrence, Recurrence, next_occurrence, occurrences
from shared.planning import RunContext, next_run, plan_contact


def wall(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A naive wall-clock time: naive on purpose, it is read in a zone later."""
    return datetime(y, mo, d, h, mi, s, us)  # noqa: DTZ001


def test_parse_the_documented_shape() -> None:
    rule = Recurrence.parse(
        {
            "frequency": "weekly",
            "interval": 1,
            "weekdays": ["monday", "thursday"],
            "until": "2026-12-31",
            "count": 10,
        }
    )
    assert rule == Recurrence("weekly", 1, frozenset({0, 3}), None, date(2026, 12, 31), 10)
    assert rule.as_dict()["weekdays"] == ["monday", "thursday"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("daily", Recurrence("daily")),
        ("Monthly", Recurrence("monthly")),
        (
            {"frequency": "weekly", "days": ["SAT", "sun"]},
            Recurrence("weekly", weekdays=frozenset({5, 6})),
        ),
        ({"type": "monthly", "day_of_month": 31}, Recurrence("monthly", month_day=31)),
        (
            {"frequency": "daily", "interval": 3, "until": "2026-07-01T00:00:00Z"},
            Recurrence("daily", 3, until=date(2026, 7, 1)),
        ),
    ],
)
def test_parse_accepted_shapes(value: dict[str, object] | str, expected: Recurrence) -> None:
    assert Recurrence.parse(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hourly", r"^frequency: must be daily, weekly or monthly"),
        ({"interval": 2}, r"^frequency: must be"),
        ({"frequency": "daily", "interval": 0}, r"^interval: must be a whole number >= 1"),
        ({"frequency": "daily", "interval": "2"}, r"^interval: must be a whole number"),
        ({"frequency": "weekly", "weekdays": ["Funday"]}, r"^weekdays: unknown day 'Funday'"),
        ({"frequency": "weekly", "weekdays": "monday"}, r"^weekdays: must be a list"),
        ({"frequency": "daily", "weekdays": ["monday"]}, r"^weekdays: only for a weekly"),
        ({"frequency": "monthly", "month_day": 32}, r"^month_day: 1\.\.31"),
        ({"frequency": "daily", "until": "next year"}, r"^until: expected a date"),
        ({"frequency": "daily", "count": 0}, r"^count: must be a whole number >= 1"),
    ],
)
def test_parse_errors_name_the_field(value: dict[str, object] | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recurrence.parse(value)


def _dates(rule: Recurrence, first: datetime, limit: int = 10) -> list[str]:
    return [o.at.strftime("%a %Y-%m-%d %H:%M") for o in occurrences(rule, first, limit)]


def test_monthly_on_the_31st_clamps_to_short_months_and_comes_back() -> None:
    rule = Recurrence("monthly", month_day=31)
    assert _dates(rule, wall(2026, 1, 31, 9, 0), 5) == [
        "Sat 2026-01-31 09:00",
        "Sat 2026-02-28 09:00",
        "Tue 2026-03-31 09:00",
        "Thu 2026-04-30 09:00",
        "Sun 2026-05-31 09:00",
    ]
    # A leap year gives the 29th
    assert _dates(rule, wall(2028, 1, 31, 9, 0), 2)[1] == "Tue 2028-02-29 09:00"


def test_monthly_without_a_day_keeps_the_first_runs_day() -> None:
    assert _dates(Recurrence("monthly", interval=2), wall(2026, 12, 31, 8, 0), 3) == [
        "Thu 2026-12-31 08:00",
        "Sun 2027-02-28 08:00",
        "Fri 2027-04-30 08:00",
    ]


def test_weekly_on_chosen_days_from_a_first_run_between_them() -> None:
    # A Wednesday first run for a Monday/Thursday rule starts on Thursday (the rule decides)
    rule = Recurrence("weekly", weekdays=frozenset({0, 3}), count=4)
    assert _dates(rule, wall(2026, 6, 3, 9, 0)) == [
        "Thu 2026-06-04 09:00",
        "Mon 2026-06-08 09:00",
        "Thu 2026-06-11 09:00",
        "Mon 2026-06-15 09:00",
    ]


def test_every_other_week() -> None:
    rule = Recurrence("weekly", interval=2, weekdays=frozenset({1, 4}))
    assert _dates(rule, wall(2026, 6, 1, 10, 0), 4) == [
        "Tue 2026-06-02 10:00",
        "Fri 2026-06-05 10:00",
        "Tue 2026-06-16 10:00",
        "Fri 2026-06-19 10:00",
    ]


def test_next_after_the_current_run_with_its_index() -> None:
    rule = Recurrence("daily", count=3)
    first = wall(2026, 6, 1, 9, 0)
    assert next_occurrence(rule, first) == Occurrence(first, 0)
    assert next_occurrence(rule, first, first) == Occurrence(wall(2026, 6, 2, 9, 0), 1)
    assert next_occurrence(rule, first, wall(2026, 6, 2, 9, 0)) == Occurrence(
        wall(2026, 6, 3, 9, 0), 2
    )
    # The count is spent after the third run
    assert next_occurrence(rule, first, wall(2026, 6, 3, 9, 0)) is None


def test_until_is_an_inclusive_date() -> None:
    rule = Recurrence("daily", until=date(2026, 6, 3))
    assert _dates(rule, wall(2026, 6, 1, 23, 30)) == [
        "Mon 2026-06-01 23:30",
        "Tue 2026-06-02 23:30",
        "Wed 2026-06-03 23:30",
    ]


def test_a_late_scheduler_jumps_straight_to_the_next_run() -> None:
    # Years of daily runs later, the answer comes without walking from the start
    rule = Recurrence("daily")
    found = next_occurrence(rule, wall(2020, 1, 1, 9, 0), wall(2026, 6, 1, 12, 0))
    assert found == Occurrence(wall(2026, 6, 2, 9, 0), (date(2026, 6, 2) - date(2020, 1, 1)).days)


@pytest.mark.parametrize(
    "rule",
    [
        Recurrence("daily", interval=10**6),
        Recurrence("weekly", interval=10**6),
        Recurrence("monthly", interval=12_000),
        Recurrence("monthly", interval=10**9),
    ],
)
def test_no_run_past_the_last_run_day_whatever_the_interval(rule: Recurrence) -> None:
    # A rule whose next run lies past 9998 (or past the calendar itself) ends instead of overflowing
    first = wall(8999, 1, 1, 9, 0)
    assert next_occurrence(rule, first) == Occurrence(first, 0)
    assert next_occurrence(rule, first, first) is None


def test_a_monthly_rule_ends_with_the_last_run_day() -> None:
    rule = Recurrence("monthly", month_day=31)
    assert next_occurrence(rule, wall(8999, 1, 31, 9, 0), wall(9998, 12, 1, 0, 0)) == Occurrence(
        wall(9998, 12, 31, 9, 0), (9998 - 8999) * 12 + 11
    )
    assert next_occurrence(rule, wall(8999, 1, 31, 9, 0), wall(9998, 12, 31, 9, 0)) is None


def test_wall_times_only() -> None:
    from datetime import UTC

    with pytest.raises(ValueError, match="naive wall-clock"):
        next_occurrence(Recurrence("daily"), datetime(2026, 6, 1, tzinfo=UTC))


_rules = st.builds(
    Recurrence,
    frequency=st.sampled_from(["daily", "weekly", "monthly"]),
    interval=st.integers(1, 3),
).flatmap(
    lambda r: st.builds(
        Recurrence,
        frequency=st.just(r.frequency),
        interval=st.just(r.interval),
        weekdays=st.frozensets(st.integers(0, 6), max_size=7)
        if r.frequency == "weekly"
        else st.just(frozenset()),
        month_day=st.none() | st.integers(1, 31) if r.frequency == "monthly" else st.none(),
        count=st.none() | st.integers(1, 12),
    )
)


@settings(max_examples=150, deadline=None)
@given(rule=_rules, first=st.datetimes(wall(2020, 1, 1), wall(2030, 12, 31)))
def test_next_after_each_run_is_the_following_run(rule: Recurrence, first: datetime) -> None:
    runs = list(occurrences(rule, first, 12))
    assert runs, "an open-ended or counted rule always has a first run"
    assert [run.index for run in runs] == list(range(len(runs)))
    for before, after in itertools.pairwise(runs):
        assert before.at < after.at
        assert next_occurrence(rule, first, before.at) == after
        # Asking from any moment between two runs gives the later one
        assert next_occurrence(rule, first, before.at + (after.at - before.at) / 2) == after
    if rule.count is not None:
        assert len(runs) == min(rule.count, 12)
    for run in runs:
        assert run.at >= first
        assert run.at.time() == first.time()
        if rule.frequency == "weekly" and rule.weekdays:
            assert run.at.weekday() in rule.weekdays
        if rule.frequency == "monthly":
            wanted = rule.month_day or first.day
            assert run.at.day == wanted or (run.at + timedelta(days=1)).month != run.at.month


def _campaign(recurrence, scheduled_wall):
    return {"id": "camp_1", "channel": "sms", "timezone": "Europe/London", "sending_window": None,
            "scheduled_at": None, "scheduled_wall": scheduled_wall, "recurrence": recurrence}


_ACCOUNT = {"id": "acct_1", "default_timezone": "Europe/London", "quiet_hours": False}
_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_weekly_campaign_scheduled_on_a_day_its_rule_skips_runs_first_on_the_next_day_it_fits():
    # 2026-12-01 is a Tuesday; the rule says Mondays: run 1 is Monday 2026-12-07 at 09:00
    rule = Recurrence.parse({"frequency": "weekly", "weekdays": ["monday"], "count": 3}).as_dict()
    context = RunContext.build("run_1", _campaign(rule, wall(2026, 12, 1, 9)), _ACCOUNT, _NOW)
    assert context.first_wall == wall(2026, 12, 7, 9)
    assert context.schedule.wall == wall(2026, 12, 7, 9)
    # a schedule that fits its rule, and a campaign without one, keep their schedule
    fits = RunContext.build("run_1", _campaign(rule, wall(2026, 11, 30, 9)), _ACCOUNT, _NOW)
    once = RunContext.build("run_1", _campaign(None, wall(2026, 12, 1, 9)), _ACCOUNT, _NOW)
    assert (fits.first_wall, once.first_wall) == (wall(2026, 11, 30, 9), wall(2026, 12, 1, 9))


def test_a_contact_local_campaign_given_one_instant_runs_at_one_instant_every_time():
    # Daily from 2026-12-10T14:00Z, contact_local, an account in Kolkata (14:00Z is 19:30 there):
    # every run is at 14:00Z for every contact, as run 1 is; not at 19:30 in each contact's zone
    rule = Recurrence.parse({"frequency": "daily", "count": 3}).as_dict()
    campaign = _campaign(rule, None) | {"timezone": "contact_local",
                                        "scheduled_at": datetime(2026, 12, 10, 14, 0, tzinfo=UTC)}
    account = _ACCOUNT | {"default_timezone": "Asia/Kolkata"}
    first = RunContext.build("run_1", campaign, account, _NOW)
    assert first.schedule.instant == datetime(2026, 12, 10, 14, 0, tzinfo=UTC)
    upcoming = next_run(campaign, account, first.first_wall, first.first_wall)
    assert upcoming is not None
    occurs_wall, plan_at, occurs_at = upcoming
    assert occurs_at == datetime(2026, 12, 11, 14, 0, tzinfo=UTC)
    assert plan_at == occurs_at - timedelta(hours=1)
    second = RunContext.build("run_2", campaign, account, _NOW, wall=occurs_wall)
    contacts = [{"id": f"ct_{zone}", "email": None, "phone": "+12125550177", "timezone": zone, "metadata": {},
                 "opted_out_sms": False, "opted_out_email": False, "opted_out_voice": False}
                for zone in ("America/New_York", "Europe/London", "Asia/Tokyo")]
    send_at = PLAN_COLUMNS.index("send_at")
    assert {plan_contact(second, c)[send_at] for c in contacts} == {datetime(2026, 12, 11, 14, 0, tzinfo=UTC)}
    # a contact_local campaign given a wall-clock time still reads each run in each contact's zone
    walled = _campaign(rule, wall(2026, 12, 10, 9)) | {"timezone": "contact_local"}
    upcoming = next_run(walled, account, wall(2026, 12, 10, 9), wall(2026, 12, 10, 9))
    assert upcoming is not None
    assert upcoming[2] is None
    local = RunContext.build("run_2", walled, account, _NOW, wall=upcoming[0])
    assert {plan_contact(local, c)[send_at] for c in contacts} == {
        datetime(2026, 12, 11, 14, 0, tzinfo=UTC), datetime(2026, 12, 11, 9, 0, tzinfo=UTC),
        datetime(2026, 12, 11, 0, 0, tzinfo=UTC)}


def test_a_run_whose_window_moves_a_contact_past_the_next_run_leaves_them_to_it():
    # Daily at 09:00 each contact's time, weekends excluded: Saturday's and Sunday's runs would go
    # on Monday, beside Monday's own: they are skipped instead; Friday's goes on Friday; the last
    # run, with none after it, still waits for Monday
    rule = Recurrence.parse({"frequency": "daily", "count": 7}).as_dict()
    campaign = _campaign(rule, wall(2026, 12, 8, 9)) | {
        "timezone": "contact_local", "sending_window": {"excluded_days": ["Saturday", "Sunday"]}}
    contact = {"id": "ct_1", "email": None, "phone": "+447400123456", "timezone": "Asia/Tokyo", "metadata": {},
               "opted_out_sms": False, "opted_out_email": False, "opted_out_voice": False}
    now = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    state, send_at, error = (PLAN_COLUMNS.index(c) for c in ("state", "send_at", "error"))

    def planned(this: datetime, following: datetime | None, rules=campaign) -> tuple[str, datetime, str | None]:
        row = plan_contact(RunContext.build("run", rules, _ACCOUNT, now, wall=this, next_wall=following), contact)
        return row[state], row[send_at], row[error]

    friday = planned(wall(2026, 12, 11, 9), wall(2026, 12, 12, 9))
    assert friday == ("planned", datetime(2026, 12, 11, 0, 0, tzinfo=UTC), None)
    for saturday_or_sunday in (planned(wall(2026, 12, 12, 9), wall(2026, 12, 13, 9)),
                               planned(wall(2026, 12, 13, 9), wall(2026, 12, 14, 9))):
        assert saturday_or_sunday[0] == "skipped"
        assert "next run" in saturday_or_sunday[2]
    last = planned(wall(2026, 12, 13, 9), None)  # (the window has no hours: Monday opens at midnight)
    assert last == ("planned", datetime(2026, 12, 13, 15, 0, tzinfo=UTC), None)
    # a weekly campaign's Saturday run moved to Monday is still well before the next Saturday's
    weekly = campaign | {"recurrence": Recurrence.parse({"frequency": "weekly", "count": 3}).as_dict()}
    assert planned(wall(2026, 12, 12, 9), wall(2026, 12, 19, 9), weekly)[0] == "planned"
