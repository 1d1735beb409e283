"""Times as every interface writes them: the API's JSON, the dashboard's pages and the command line."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """`2026-03-10T09:00:00Z` for an aware time; naive (wall-clock) times without a zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat(timespec="seconds")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
