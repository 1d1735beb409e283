"""Reading request bodies and cursors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.api.paging import MAX_PAGE_SIZE, PAGE_SIZE, decode_cursor, encode_cursor
from services.api.schemas import CampaignSettings, ContactIn, parse, pydantic_details, text_errors, too_deep
from shared.domain.times import iso
from shared.errors import AppError, Invalid

__all__ = [
    "BadRequest",
    "decode_cursor",
    "encode_cursor",
    "iso",
    "page_limit",
    "query_address",
    "query_choice",
    "read_model",
]

M = TypeVar("M", bound=BaseModel)


class BadRequest(AppError):
    """The request body is not JSON."""

    status = 400
    code = "bad_request"


#: Bodies larger than this are decoded and validated off the event loop (a campaign with 100,000
#: inline contacts takes about a second to check; the API answers other requests meanwhile).
LARGE_BODY = 256 * 1024


async def read_model(request: web.Request, model: type[M], channel: str | None = None) -> M:
    """The JSON body validated as `model`; 400 if it is not JSON, 422 listing every bad field
    (`channel`: a campaign's, which a change to it leaves, see `parse`)."""
    raw = await request.read()
    if len(raw) > LARGE_BODY:
        return await asyncio.to_thread(_decode, raw, model, channel)
    return _decode(raw, model, channel)


def _decode(raw: bytes, model: type[M], channel: str | None) -> M:
    try:
        return _decode_nested(raw, model, channel)
    except RecursionError as exc:  # json's decoder (or a check after it) went as deep as Python goes
        raise too_deep() from exc


def _decode_nested(raw: bytes, model: type[M], channel: str | None) -> M:
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    contacts = data.get("contacts") if isinstance(data, dict) else None
    if issubclass(model, CampaignSettings) and isinstance(contacts, list) and len(contacts) > CONTACTS_CHUNK:
        checked = _contacts_in_chunks(model, contacts)
        return parse(model, {**data, "contacts": []}, channel).model_copy(update={"contacts": checked})
    return parse(model, data, channel)


#: Inline contacts validated at a time (each chunk holds the interpreter a few milliseconds).
CONTACTS_CHUNK = 2000
#: The type of a campaign's `contacts` (CampaignSettings': the create's and the change's).
_CONTACTS: TypeAdapter[list[str | ContactIn]] = TypeAdapter(list[str | ContactIn])


def _contacts_in_chunks(model: type[M], contacts: list[Any]) -> list[Any]:
    """A long `contacts` list validated chunk by chunk, letting the event loop's thread run in
    between (pydantic holds the interpreter while it validates): 422 listing every bad one."""
    checked: list[Any] = []
    details: list[dict[str, str]] = []
    for start in range(0, len(contacts), CONTACTS_CHUNK):
        chunk = contacts[start : start + CONTACTS_CHUNK]
        for detail in text_errors(chunk, depth=2):
            index, _, rest = detail["field"].lstrip("[").partition("]")
            details.append({"field": f"contacts[{int(index) + start}]{rest}", "reason": detail["reason"]})
        try:
            checked.extend(_CONTACTS.validate_python(chunk))
        except ValidationError as exc:
            for detail in pydantic_details(exc):
                index, _, rest = detail["field"].lstrip("[").partition("]")
                field = f"contacts[{int(index) + start}]{rest}" if index.isdigit() else "contacts"
                details.append({"field": field, "reason": detail["reason"]})
        time.sleep(0)  # hand the interpreter to the event loop's thread
    if details:
        raise Invalid("the request is not valid", details=details)
    return checked


def page_limit(request: web.Request, default: int = PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """`?limit=` bounded to 1..maximum."""
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise Invalid("bad limit", details=[{"field": "limit", "reason": f"must be 1..{maximum}"}])
    return int(raw)


def query_address(request: web.Request, name: str) -> str:
    """A phone number or email in the query, stripped. A phone's leading `+` written as is in a URL
    (`?to=+14155550123`, as curl sends it) arrives as a space: it is a `+` again."""
    value = request.query.get(name) or ""
    if value.startswith(" ") and value.strip()[:1].isdigit():
        return "+" + value.strip()
    return value.strip()


def query_choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query filter's value, when given: one of `allowed`, else Invalid naming them."""
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise Invalid(f"unknown {name} {value!r}", details=[{"field": name, "reason": f"one of {', '.join(allowed)}"}])
    return value
