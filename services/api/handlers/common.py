"""Reading request bodies and cursors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.api.schemas import pydantic_details
from shared.errors import AppError, Invalid

M = TypeVar("M", bound=BaseModel)


class BadRequest(AppError):
    """The request body is not JSON."""

    status = 400
    code = "bad_request"


async def read_model(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as `model`; 400 if it is not JSON, 422 listing every bad field."""
    try:
        data: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", details=[{"field": "body", "reason": "not an object"}])
    where = _nul_in(data)
    if where is not None:
        raise Invalid(
            "text may not contain NUL characters", details=[{"field": where or "body", "reason": "contains \\u0000"}]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("the request is not valid", details=pydantic_details(exc)) from exc


def iso(value: datetime | None) -> str | None:
    """`2026-03-10T09:00:00Z` for an aware time; naive (wall-clock) times without a zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat(timespec="seconds")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_limit(request: web.Request, default: int = 50, maximum: int = 200) -> int:
    """`?limit=` bounded to 1..maximum."""
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise Invalid("bad limit", details=[{"field": "limit", "reason": f"must be 1..{maximum}"}])
    return int(raw)


def encode_cursor(created_at: datetime, object_id: str) -> str:
    """An opaque cursor for `(created_at, id)`."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{object_id}".encode()).decode()


def decode_cursor(request: web.Request) -> tuple[datetime, str] | None:
    """The `?cursor=` of the request, or None; 422 when it is not one of ours."""
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        created, object_id = base64.urlsafe_b64decode(raw.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), object_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("bad cursor", details=[{"field": "cursor", "reason": "not a cursor from this API"}]) from exc


def _nul_in(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) holding a NUL character, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = _nul_in(item, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
