"""`POST /contacts/import`: a CSV body (or a multipart `file` part), streamed into the account."""

from __future__ import annotations

from aiohttp import web

from services.api.uploads import csv_chunks
from services.api.usecases.contacts_import import import_contacts as run_import
from shared.web import json_response


async def import_contacts(request: web.Request) -> web.Response:
    """`POST /contacts/import?group_id=&country=` → 200 {"rows", "created", "updated", "duplicates",
    "rejected", "errors": [{"line", "field", "reason"}], "errors_not_listed"}.

    Multipart form fields `group_id` and `country`, sent before the `file` part, count as the
    query parameters do.
    """
    options = {"group_id": request.query.get("group_id") or None, "country": request.query.get("country") or None}
    settings = request.app["settings"]
    chunks, charset = await csv_chunks(request, options, settings.import_max_bytes)
    summary = await run_import(
        request.app["pool"],
        request["account"]["id"],
        chunks,
        group_id=options["group_id"],
        country=options["country"],
        charset=charset,
        concurrency=settings.import_concurrency,
    )
    return json_response(summary.as_dict())
