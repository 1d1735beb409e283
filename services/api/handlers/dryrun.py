"""`POST /campaigns/{id}/dry-run`: what launching would do, without sending or writing anything."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from services.api.usecases.dryrun import dry_run as run_dry
from shared.web import json_response


async def dry_run(request: web.Request) -> web.Response:
    """How many contacts go now, how many wait (until when), how many are skipped and why, how many
    lack a template variable, the cost against the balance, and a few sample renders."""
    answer = await run_dry(request.app["pool"], request["account"], request.match_info["id"], datetime.now(UTC))
    return json_response(answer)
