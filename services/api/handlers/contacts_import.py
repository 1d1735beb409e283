"""`POST /contacts/import`: a CSV body (or a multipart `file` part), streamed into the account."""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from services.api.handlers.common import BadRequest
from shared.contact_import import WRITERS, import_csv
from shared.domain import contacts as rules
from shared.errors import AppError, Invalid
from shared.web import json_response

log = structlog.get_logger()

#: Bytes read from the request at a time.
CHUNK = 1 << 16
#: Content types taken as a CSV body (its delimiter is read off the header: `,`, `;`, tab or `|`).
CSV_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/plain",
        "text/tab-separated-values",
        "application/octet-stream",
        "application/vnd.ms-excel",
    }
)


class UnsupportedMediaType(AppError):
    """Send the file as text/csv or as multipart/form-data with a `file` part."""

    status = 415
    code = "unsupported_media_type"


def _encoding(charset: str | None) -> str:
    try:
        return codecs.lookup(charset or "utf-8").name
    except LookupError:
        raise Invalid(
            "unknown charset", details=[{"field": "charset", "reason": f"{charset!r} is not an encoding"}]
        ) from None


def _region(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return rules.region(raw)
    except ValueError as exc:
        raise Invalid("bad country", details=[{"field": "country", "reason": str(exc)}]) from None


def _unreadable(exc: Exception) -> BadRequest:
    return BadRequest(f"the multipart body cannot be read: {exc}")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield part.decode(chunk)
    except (ValueError, HttpProcessingError) as exc:
        raise _unreadable(exc) from exc


async def _form(request: web.Request, options: dict[str, str | None]) -> tuple[AsyncIterator[bytes], str | None]:
    """Read form fields up to the `file` part: (its chunks, its charset); fills `options`."""
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise Invalid("no file", details=[{"field": "file", "reason": "the form has no 'file' part"}])
            if not isinstance(part, BodyPartReader):
                continue
            if part.name in options and options[part.name] is None:
                options[part.name] = (await part.text()).strip() or None
            elif part.name == "file":
                return _part_chunks(part), part.get_charset(None)  # type: ignore[arg-type]
            else:
                await part.release()
    except (ValueError, HttpProcessingError) as exc:  # UnicodeDecodeError is a ValueError
        raise _unreadable(exc) from exc


async def import_contacts(request: web.Request) -> web.Response:
    """`POST /contacts/import?group_id=&country=` → 200 {"rows", "created", "updated", "duplicates",
    "rejected", "errors": [{"line", "field", "reason"}], "errors_not_listed"}.

    Multipart form fields `group_id` and `country`, sent before the `file` part, count as the
    query parameters do.
    """
    account_id = request["account"]["id"]
    options = {"group_id": request.query.get("group_id") or None, "country": request.query.get("country") or None}
    chunks: AsyncIterator[bytes]
    if request.content_type == "multipart/form-data":
        chunks, charset = await _form(request, options)
    elif request.content_type in CSV_TYPES:
        chunks, charset = request.content.iter_chunked(CHUNK), request.charset
    else:
        raise UnsupportedMediaType()
    country = _region(options["country"])
    encoding = _encoding(charset)
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(request.app["pool"].acquire()) for _ in range(WRITERS)]
        summary = await import_csv(
            conns,
            account_id,
            chunks,
            group_id=options["group_id"],
            country=country,
            encoding=encoding,
        )
    log.info(
        "contacts.imported",
        rows=summary.rows,
        created=summary.created,
        updated=summary.updated,
        rejected=summary.rejected,
    )
    return json_response(summary.as_dict())
