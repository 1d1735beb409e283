"""API-key middleware: `Authorization: Bearer <key>` → the caller's account, bound to the logs."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from shared.db import accounts
from shared.errors import Unauthorized
from shared.web import Handler

#: Paths served without an API key.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/dashboard", "/static")


def auth_middleware() -> Any:
    """Resolve the API key to `request["account"]`; 401 when it is missing or unknown."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        account = await accounts.account_for_key(request.app["pool"], key.strip())
        if account is None:
            raise Unauthorized("invalid API key")
        request["account"] = account
        with structlog.contextvars.bound_contextvars(account_id=account["id"]):
            return await handler(request)

    return middleware
