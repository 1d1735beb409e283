"""PURE: a campaign's sends, deliveries and replies over time, as buckets and as an inline SVG
chart (drawn on the server: no chart library, no script needed to see it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from markupsafe import Markup

from shared.row import Row

#: Buckets shown.
BUCKETS = 60
#: Bucket widths to choose from (seconds): the smallest whose 60 buckets cover the campaign so far.
WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
#: The series drawn, their labels and colours (colour-blind safe, each with its own dash too).
SERIES = (
    ("sent", "Sent", "#2563eb", ""),
    ("delivered", "Delivered", "#059669", "6 3"),
    ("replied", "Replied", "#d97706", "2 3"),
)
_W, _H, _LEFT, _BOTTOM, _TOP = 640, 200, 44, 24, 10


def width_for(span: timedelta) -> int:
    """The bucket width (seconds) for a campaign that has been sending for `span`."""
    seconds = max(span.total_seconds(), 1)
    return next((w for w in WIDTHS if seconds / w <= BUCKETS), WIDTHS[-1])


def origin(now: datetime, width_s: int) -> datetime:
    """The start of the first of the BUCKETS buckets ending with the one `now` is in."""
    epoch = int(now.timestamp()) // width_s * width_s
    return datetime.fromtimestamp(epoch - (BUCKETS - 1) * width_s, UTC)


@dataclass
class Series:
    """Counts per bucket from `start`, `width_s` seconds each; the last bucket holds `now`."""

    start: datetime
    width_s: int
    sent: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    delivered: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    replied: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    @classmethod
    def from_rows(cls, start: datetime, width_s: int, rows: Iterable[Row]) -> Series:
        """From the database's buckets (`at`, `sent`, `delivered`, `replied`)."""
        series = cls(start, width_s)
        for row in rows:
            index = int((row["at"] - start).total_seconds()) // width_s
            if 0 <= index < BUCKETS:
                series.sent[index] += row["sent"]
                series.delivered[index] += row["delivered"]
                series.replied[index] += row["replied"]
        return series

    def advance(self, now: datetime) -> None:
        """Slide the window so that its last bucket holds `now`."""
        steps = int((now - self.start).total_seconds()) // self.width_s - (BUCKETS - 1)
        if steps <= 0:
            return
        steps = min(steps, BUCKETS)
        for values in (self.sent, self.delivered, self.replied):
            del values[:steps]
            values.extend([0] * steps)
        self.start += timedelta(seconds=steps * self.width_s)

    def add(self, now: datetime, sent: int, delivered: int, replied: int) -> None:
        """Count what happened since the last look into the bucket `now` is in."""
        self.advance(now)
        self.sent[-1] += max(sent, 0)
        self.delivered[-1] += max(delivered, 0)
        self.replied[-1] += max(replied, 0)

    def recent_rate(self, now: datetime, window_s: int = 60) -> float:
        """Sends per second over about the last `window_s` seconds (whole buckets), from the first
        bucket of them with a send: a campaign sending for two seconds reads its rate over those
        two, not over a minute mostly before it began."""
        self.advance(now)
        buckets = max(1, min(BUCKETS, -(-window_s // self.width_s)))
        recent = self.sent[-buckets:]
        quiet = next((k for k, n in enumerate(recent) if n), len(recent) - 1)
        buckets -= quiet
        elapsed = (buckets - 1) * self.width_s + max(1.0, (now - self.start).total_seconds() % self.width_s)
        return sum(self.sent[-buckets:]) / elapsed


def svg(series: Series) -> Markup:
    """The chart: one line per series over the buckets, with axes, a legend and a text summary."""
    most = max([*series.sent, *series.delivered, *series.replied])
    peak = max(most, 1)  # the axis's top (a chart of nothing still has one)
    plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
    step = plot_w / (BUCKETS - 1)

    def y(value: int) -> float:
        return _TOP + plot_h - plot_h * value / peak

    parts = [
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - 8}" y2="{_TOP + plot_h}" stroke="#9ca3af"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#9ca3af"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{_LEFT}" y="{_H - 6}" font-size="11">{_clock(series.start)}</text>',
        f'<text x="{_W - 8}" y="{_H - 6}" text-anchor="end" font-size="11">'
        f"{_clock(series.start + timedelta(seconds=series.width_s * (BUCKETS - 1)))} UTC</text>",
    ]
    for key, _label, colour, dash in SERIES:
        values = getattr(series, key)
        points = " ".join(f"{_LEFT + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dashes} points="{points}"/>')
    totals = {key: sum(getattr(series, key)) for key, *_ in SERIES}
    summary = (
        f"Over the last {_span(series.width_s * BUCKETS)}, per {_span(series.width_s)}: "
        + ", ".join(f"{totals[key]} {label.lower()}" for key, label, *_ in SERIES)
        + f"; at most {most} in {_one(series.width_s)}."
    )
    legend = "".join(
        f'<span class="key"><svg width="22" height="8" aria-hidden="true"><line x1="0" y1="4" x2="22" y2="4" '
        f'stroke="{colour}" stroke-width="2"{f" stroke-dasharray={chr(34)}{dash}{chr(34)}" if dash else ""}/></svg>'
        f"{label}</span>"
        for _key, label, colour, dash in SERIES
    )
    return Markup(  # noqa: S704 (numbers and fixed words only: nothing from a user)
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="chart-summary" class="chart">{"".join(parts)}</svg>'
        f'<p class="legend">{legend}</p><p id="chart-summary" class="summary">{summary}</p>'
    )


def _clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S" if at.second else "%H:%M")


def _one(seconds: int) -> str:
    """A bucket's width as a span of its own: `one second`, `2 seconds`, `one minute`, `12 hours`."""
    span = _span(seconds)
    return span if span[0].isdigit() else f"one {span}"


def _span(seconds: int) -> str:
    """A span after `per` or `the last`: `second`, `2 seconds`, `minute`, `5 minutes`, `day`."""
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return "second" if seconds == 1 else f"{seconds} seconds"
