"""Cursors as the API writes them (JSON handlers and dashboard pages alike)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from shared.errors import Invalid
from shared.ids import PREFIXES
from shared.row import Row

R = TypeVar("R", bound=Row)


def encode_cursor(created_at: datetime, object_id: str) -> str:
    """An opaque cursor for `(created_at, id)`."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{object_id}".encode()).decode()


#: `?limit=` when not given, and the largest one accepted, for every list.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def newest_first(
    rows: Sequence[asyncpg.Record], limit: int, body: Callable[[asyncpg.Record], dict[str, Any]]
) -> dict[str, Any]:
    """A page of a list read `limit + 1` rows at a time by `(created_at, id)`: the first `limit`
    as `data`, and the cursor after the last of them when there are more."""
    return keyset_page(rows, limit, body)


def keyset_page(rows: Sequence[R], limit: int, body: Callable[[R], dict[str, Any]], key: str = "id") -> dict[str, Any]:
    """A page of a list read `limit + 1` rows at a time in `(created_at, key)` order, newest or
    oldest first: the first `limit` as `data`, and the cursor after the last of them when there
    are more."""
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return {
        "data": [body(r) for r in page],
        "next_cursor": encode_cursor(last["created_at"], last[key]) if last else None,
    }


def encode_position(position: int) -> str:
    """An opaque cursor for a list in a fixed order (a campaign's runs by number)."""
    return base64.urlsafe_b64encode(f"at|{position}".encode()).decode()


def decode_position(request: web.Request) -> int:
    """The `?cursor=` of the request as a position (0 without one); 422 when it is not one of ours."""
    raw = request.query.get("cursor")
    if not raw:
        return 0
    try:
        tag, position = base64.urlsafe_b64decode(raw.encode()).decode().split("|", 1)
        if tag == "at" and position.isascii() and position.isdigit() and int(position) <= MAX_POSITION:
            return int(position)
    except (ValueError, UnicodeDecodeError):
        pass
    raise Invalid("bad cursor", details=[{"field": "cursor", "reason": "not a cursor from this API"}])


def decode_id_cursor(request: web.Request, kind: str) -> str | None:
    """The `?cursor=` of a list in id order (a campaign's deliveries), the id of the last object a
    page showed, or None; 422 when it is not an id of that `kind` (`dlv_` and 16 hex digits)."""
    raw = request.query.get("cursor")
    if not raw:
        return None
    prefix, _, digits = raw.partition("_")
    if prefix == PREFIXES[kind] and len(digits) == _ID_DIGITS and all(c in "0123456789abcdef" for c in digits):
        return raw
    raise Invalid("bad cursor", details=[{"field": "cursor", "reason": "not a cursor from this API"}])


#: The hex digits of an id after its prefix (`shared.ids.new_id`).
_ID_DIGITS = 16
#: The largest position or id a cursor may name (PostgreSQL's integer; bigint ids use BIGGEST_ID).
MAX_POSITION = 2**31 - 1
BIGGEST_ID = 2**63 - 1


def decode_cursor(request: web.Request) -> tuple[datetime, str] | None:
    """The `?cursor=` of the request, or None; 422 when it is not one of ours."""
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        created, object_id = base64.urlsafe_b64decode(raw.encode()).decode().split("|", 1)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("our cursors' times carry their offset")
        return at.astimezone(UTC), object_id  # (a time UTC cannot hold, year 0 or 10000, is no cursor of ours)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise Invalid("bad cursor", details=[{"field": "cursor", "reason": "not a cursor from this API"}]) from exc
