"""A campaign's live state: its figures, progress, pace and chart, for the page and for its
server-sent events (`GET /dashboard/campaigns/{id}/live`: one tick a second, two small reads a
tick — the campaign's row and its counts — and the chart kept in memory from their deltas)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from services.api.dashboard import chart, text
from services.api.dashboard.web import account_of, csrf_token, fragment
from services.api.usecases import campaigns as usecase
from shared.db import activity, senders
from shared.errors import NotFound

#: Seconds between two looks at a campaign for a live page (at least 1: one viewer, two reads).
TICK_S = 1.0
#: Ticks between two looks at the contacts waiting for their hours.
WAITING_EVERY = 10
#: Ticks between two keep-alive comments when nothing changed.
KEEPALIVE_EVERY = 15
#: Set when the API stops: every open stream ends at once.
STOPPING = web.AppKey("dashboard_stopping", asyncio.Event)
#: The buttons each state shows.
ACTIONS = {
    "draft": ("launch",),
    "scheduled": ("pause", "cancel"),
    "running": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}
_OPEN = ("draft", "scheduled", "running", "paused")


def progress(row: Any, results: dict[str, Any]) -> int | None:
    """Percentage of the contacts whose delivery has ended (sent, delivered, failed, skipped…;
    cancelled ones not counted as done); None for a campaign that never started: a draft, or one
    cancelled as a draft."""
    if row["status"] == "draft" or row["launched_at"] is None:
        return None
    total = results["total_contacts"]
    if not total:
        return 0
    done = total - results["pending"] - results.get("cancelled", 0)
    return max(0, min(100, int(100 * done) // int(total)))


@dataclass
class View:
    """One look at a campaign, and what the page shows of it."""

    row: asyncpg.Record
    results: dict[str, Any]
    series: chart.Series
    waiting: asyncpg.Record | None
    sender_rate: float | None
    now: datetime
    rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.rate = self.series.recent_rate(self.now)

    @property
    def progress(self) -> int | None:
        """See `progress`."""
        return progress(self.row, self.results)

    @property
    def eta_s(self) -> float | None:
        """Seconds until every pending delivery is sent at the present rate (None: no estimate)."""
        pending = self.results["pending"]
        if self.row["status"] not in ("scheduled", "running") or not pending:
            return None
        later = 0.0
        if self.waiting is not None and self.waiting["waiting"]:
            later = max(0.0, (self.waiting["next_at"] - self.now).total_seconds())
        if self.rate > 0:
            return max(float(pending) / self.rate, later)
        return later or None

    def context(self, request: web.Request) -> dict[str, Any]:
        """What the live macros read."""
        breaker = _get(self.row, "paused_reason")
        return {
            "row": self.row,
            "results": self.results,
            "progress": self.progress,
            "rate": text.rate(self.rate) if self.row["status"] in ("scheduled", "running") else "not sending",
            "eta": text.duration(self.eta_s) if self.eta_s is not None else None,
            "waiting": self.waiting,
            "sender_rate": self.sender_rate,
            "breaker": breaker if isinstance(breaker, dict) else None,
            "actions": ACTIONS.get(self.row["status"], ()),
            "chart": chart.svg(self.series),
            "csrf": csrf_token(request),
        }

    def fragments(self, request: web.Request) -> dict[str, str]:
        """The page's live parts, rendered."""
        context = self.context(request)
        return {
            name: str(fragment("_live.html", name, **context))
            for name in ("status", "progress", "figures", "pace", "waiting", "actions", "chart")
        }


def _get(row: asyncpg.Record, key: str) -> Any:
    """A column that a later migration adds (None until it exists)."""
    return row[key] if key in row.keys() else None  # noqa: SIM118 (an asyncpg Record iterates over its values)


async def sender_rate(pool: asyncpg.Pool, row: asyncpg.Record) -> float | None:
    """The campaign's sender's `max_per_second`, once senders have one."""
    if not row["from_number"]:
        return None
    for sender in await senders.list_all(pool, row["account_id"]):
        if sender["address"] == row["from_number"] and "max_per_second" in sender.keys():  # noqa: SIM118
            return float(sender["max_per_second"])
    return None


async def history(pool: asyncpg.Pool, row: asyncpg.Record, now: datetime) -> chart.Series:
    """The chart's buckets so far (one bounded read)."""
    began = row["launched_at"] or row["created_at"]
    width = chart.width_for(now - began)
    start = chart.origin(now, width)
    return chart.Series.from_rows(start, width, await activity.buckets(pool, row["id"], width, start))


async def look(request: web.Request, campaign_id: str) -> View:
    """The campaign as its page first shows it."""
    pool = request.app["pool"]
    now = datetime.now(UTC)
    row, counts = await usecase.load(pool, account_of(request)["id"], campaign_id)
    series = await history(pool, row, now)
    waiting = await activity.waiting(pool, row["id"], now) if row["status"] in _OPEN else None
    return View(row, usecase.results_of(row, counts), series, waiting, await sender_rate(pool, row), now)


async def stream(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}/live`: `event: update` with the page's live parts whenever
    they change (a keep-alive comment otherwise), `event: end` once the campaign is over."""
    pool = request.app["pool"]
    account_id = account_of(request)["id"]
    view = await look(request, request.match_info["id"])
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    stopping = request.app[STOPPING]
    last: dict[str, str] = {}
    tick = 0
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while not stopping.is_set():
            parts = view.fragments(request)
            changed = {k: v for k, v in parts.items() if last.get(k) != v}
            if changed:
                await response.write(f"event: update\ndata: {json.dumps(changed)}\n\n".encode())
                last.update(changed)
            elif tick % KEEPALIVE_EVERY == 0:
                await response.write(b": still here\n\n")
            if view.row["status"] not in _OPEN and not view.results["pending"]:
                await response.write(b"event: end\ndata: {}\n\n")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), TICK_S)
            tick += 1
            try:
                view = await _next(pool, account_id, view, tick)
            except NotFound:  # deleted meanwhile (a draft)
                await response.write(b"event: end\ndata: {}\n\n")
                break
    return response


async def _next(pool: asyncpg.Pool, account_id: str, view: View, tick: int) -> View:
    """The next look: the row and counts read again, the chart moved on by their differences."""
    now = datetime.now(UTC)
    row, counts = await usecase.load(pool, account_id, view.row["id"])
    results = usecase.results_of(row, counts)
    view.series.add(
        now,
        results["sent"] - view.results["sent"],
        results["delivered"] - view.results["delivered"],
        results["replied"] - view.results["replied"],
    )
    waiting = view.waiting
    if row["status"] in _OPEN and tick % WAITING_EVERY == 0:
        waiting = await activity.waiting(pool, row["id"], now)
    return View(row, results, view.series, waiting, view.sender_rate, now)


async def stop_streams(app: web.Application) -> None:
    """on_shutdown: end every open stream (they would otherwise hold the shutdown for its timeout)."""
    app[STOPPING].set()
