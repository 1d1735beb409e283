"""Reading request bodies and cursors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from services.api.paging import decode_cursor, encode_cursor, iso
from services.api.schemas import parse
from shared.errors import AppError, Invalid

__all__ = ["BadRequest", "decode_cursor", "encode_cursor", "iso", "page_limit", "read_model"]

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
    return parse(model, data)


def page_limit(request: web.Request, default: int = 50, maximum: int = 200) -> int:
    """`?limit=` bounded to 1..maximum."""
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise Invalid("bad limit", details=[{"field": "limit", "reason": f"must be 1..{maximum}"}])
    return int(raw)
