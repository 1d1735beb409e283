"""The campaign chart's caption reads as English at every bucket width the chart may pick."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.api.dashboard import chart

_CAPTIONS = {
    1: ("the last minute, per second", "in one second"),
    2: ("the last 2 minutes, per 2 seconds", "in 2 seconds"),
    5: ("the last 5 minutes, per 5 seconds", "in 5 seconds"),
    10: ("the last 10 minutes, per 10 seconds", "in 10 seconds"),
    15: ("the last 15 minutes, per 15 seconds", "in 15 seconds"),
    30: ("the last 30 minutes, per 30 seconds", "in 30 seconds"),
    60: ("the last hour, per minute", "in one minute"),
    120: ("the last 2 hours, per 2 minutes", "in 2 minutes"),
    300: ("the last 5 hours, per 5 minutes", "in 5 minutes"),
    600: ("the last 10 hours, per 10 minutes", "in 10 minutes"),
    900: ("the last 15 hours, per 15 minutes", "in 15 minutes"),
    1800: ("the last 30 hours, per 30 minutes", "in 30 minutes"),
    3600: ("the last 60 hours, per hour", "in one hour"),
    7200: ("the last 5 days, per 2 hours", "in 2 hours"),
    21600: ("the last 15 days, per 6 hours", "in 6 hours"),
    43200: ("the last 30 days, per 12 hours", "in 12 hours"),
    86400: ("the last 60 days, per day", "in one day"),
}


def test_every_width_has_its_caption() -> None:
    assert set(_CAPTIONS) == set(chart.WIDTHS)


@pytest.mark.parametrize("width", chart.WIDTHS)
def test_the_caption_names_the_bucket_width_as_a_span(width: int) -> None:
    series = chart.Series(datetime(2027, 3, 10, tzinfo=UTC), width)
    series.sent[10], series.delivered[12], series.replied[30] = 180, 170, 4
    over, busiest = _CAPTIONS[width]
    assert f"Over {over}: 180 sent, 170 delivered, 4 replied; at most 180 {busiest}.</p>" in chart.svg(series)


def test_a_chart_of_nothing_says_so() -> None:
    caption = chart.svg(chart.Series(datetime(2027, 3, 10, tzinfo=UTC), 2))
    assert "0 sent, 0 delivered, 0 replied; at most 0 in 2 seconds." in caption


def test_the_send_rate_counts_from_the_first_send_of_its_minute() -> None:
    # Given a chart of one-second buckets whose last two seconds hold 146 sends, after a quiet minute
    start = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    series = chart.Series(start, 1)
    series.sent[-2], series.sent[-1] = 100, 46
    now = start.replace(second=59, microsecond=500_000)
    # Then the rate is over those two seconds (73 a second), not over the minute (2.4)
    assert series.recent_rate(now) == 73.0
    # And a steady campaign reads its rate over the whole minute
    steady = chart.Series(start, 1)
    steady.sent[:] = [10] * chart.BUCKETS
    assert 9.5 < steady.recent_rate(now) <= 10.5
    # And nothing sent reads zero
    assert chart.Series(start, 1).recent_rate(now) == 0.0
