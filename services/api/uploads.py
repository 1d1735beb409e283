"""Reading an uploaded CSV from a request: a `text/csv` body, or a multipart form's `file` part
(the API's `POST /contacts/import` and the dashboard's upload form alike)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from shared.errors import AppError, Invalid, PayloadTooLarge

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


class BadUpload(AppError):
    """The request body cannot be read."""

    status = 400
    code = "bad_request"


def _unreadable(exc: Exception) -> BadUpload:
    return BadUpload(f"the multipart body cannot be read: {exc}")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield part.decode(chunk)
    except (ValueError, HttpProcessingError) as exc:
        raise _unreadable(exc) from exc


async def _form(request: web.Request, options: dict[str, str | None]) -> tuple[AsyncIterator[bytes], str | None]:
    """Read form fields up to the `file` part: (its chunks, its charset); fills `options`. A
    reader already started (the dashboard read its CSRF token first) is read on."""
    try:
        reader = request.get("multipart") or await request.multipart()
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


async def csv_chunks(
    request: web.Request, options: dict[str, str | None], max_bytes: int
) -> tuple[AsyncIterator[bytes], str | None]:
    """The CSV's bytes as they arrive and its charset; a multipart form's fields named in `options`
    (sent before the `file` part) fill the ones still None. A body longer than `max_bytes` is a 413
    naming the limit: at once when its length is announced, else when the limit is passed."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    if request.content_type == "multipart/form-data":
        chunks, charset = await _form(request, options)
    elif request.content_type in CSV_TYPES:
        chunks, charset = request.content.iter_chunked(CHUNK), request.charset
    else:
        raise UnsupportedMediaType()
    return _at_most(chunks, max_bytes), charset


async def _at_most(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    read = 0
    async for chunk in chunks:
        read += len(chunk)
        if read > max_bytes:
            raise _too_large(max_bytes)
        yield chunk


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file is larger than {max_bytes:,} bytes, the most an import takes",
        details=[{"field": "body", "reason": f"larger than {max_bytes} bytes (CAMPAIGNS_IMPORT_MAX_BYTES)"}],
        extra={"max_bytes": max_bytes},
    )
