"""`/account` (balance, prices, defaults) and `/senders` (verified sender identities)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.handlers.common import decode_cursor, iso, page_limit, read_model
from services.api.paging import keyset_page
from services.api.usecases import account as usecase
from services.api.usecases.account import AccountPatch, KeyIn, SenderIn, SenderPatch
from shared.db import senders
from shared.web import json_response

__all__ = [
    "AccountPatch",
    "KeyIn",
    "SenderIn",
    "SenderPatch",
    "add_sender",
    "delete_sender",
    "get_account",
    "list_senders",
    "update_account",
    "update_sender",
]


def _account_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "balance": str(row["balance"]),
        "reserved": str(row["reserved"]),
        "prices": {
            "sms": str(row["price_sms"]),
            "email": str(row["price_email"]),
            "voice_minute": str(row["price_voice_minute"]),
        },
        "default_timezone": row["default_timezone"],
        "quiet_hours": row["quiet_hours"],
        "created_at": iso(row["created_at"]),
    }


async def list_keys(request: web.Request) -> web.Response:
    """`GET /api-keys?limit=&cursor=`: the account's keys, oldest first (prefix, times, `current`
    for the one calling), never the keys themselves."""
    limit = page_limit(request)
    account = request["account"]
    keys = await usecase.api_keys_page(
        request.app["pool"], account["id"], account["api_key_hash"], decode_cursor(request), limit + 1
    )
    return json_response(keyset_page(keys, limit, _key_body, key="prefix"))


async def create_key(request: web.Request) -> web.Response:
    """`POST /api-keys` → 201 with the new key, shown this once (a body, when sent, is `{}`: no
    field is known)."""
    if request.body_exists:
        await read_model(request, KeyIn)
    return json_response(await usecase.issue_key(request.app["pool"], request["account"]["id"]), status=201)


async def revoke_key(request: web.Request) -> web.Response:
    """`DELETE /api-keys/{prefix}` → 200 with the revoked key; 409 for the account's last live key."""
    pool, account_id = request.app["pool"], request["account"]["id"]
    return json_response(_key_body(await usecase.revoke_key(pool, account_id, request.match_info["prefix"])))


def _key_body(key: dict[str, Any]) -> dict[str, Any]:
    return {**key, "created_at": iso(key["created_at"]), "revoked_at": iso(key["revoked_at"])}


async def get_account(request: web.Request) -> web.Response:
    """`GET /account`: balance (what launched campaigns hold back is `reserved`), prices, defaults."""
    return json_response(_account_body(await usecase.view(request.app["pool"], request["account"]["id"])))


async def update_account(request: web.Request) -> web.Response:
    """`PATCH /account`: the default time zone and the legal quiet-hours policy."""
    patch = await read_model(request, AccountPatch)
    return json_response(_account_body(await usecase.update(request.app["pool"], request["account"]["id"], patch)))


def sender_body(row: Any) -> dict[str, Any]:
    """A sender identity as the API shows it."""
    verified = row["verified_at"] is not None
    body = {
        "kind": row["kind"],
        "address": row["address"],
        "state": "verified" if verified else "pending",
        "verified": verified,
        "verified_at": iso(row["verified_at"]),
        "created_at": iso(row["created_at"]),
        # its own rate (None: the default for its kind of number, CAMPAIGNS_SENDER_RATE_*)
        "max_per_second": row["max_per_second"],
    }
    if not verified:
        body["verification"] = (
            f"open the link mailed to {row['address']} (it works 48 hours; add it again for a new one)"
        )
    return body


async def add_sender(request: web.Request) -> web.Response:
    """`POST /senders` → 201 (200 when it was there already)."""
    body = await read_model(request, SenderIn)
    row = await usecase.add_sender(request.app["pool"], request["account"]["id"], body, request.app["senders"])
    return json_response(sender_body(row), status=201 if row["created"] else 200)


async def list_senders(request: web.Request) -> web.Response:
    """`GET /senders?limit=&cursor=`, oldest first."""
    limit = page_limit(request)
    rows = await senders.page(request.app["pool"], request["account"]["id"], decode_cursor(request), limit + 1)
    return json_response(keyset_page(rows, limit, sender_body, key="address"))


async def update_sender(request: web.Request) -> web.Response:
    """`PATCH /senders/{address}`: its `max_per_second`."""
    patch = await read_model(request, SenderPatch)
    pool, account_id = request.app["pool"], request["account"]["id"]
    row = await usecase.set_sender_rate(pool, account_id, request.match_info["address"], patch)
    return json_response(sender_body(row))


async def delete_sender(request: web.Request) -> web.Response:
    """`DELETE /senders/{address}` → 204; 409 while a campaign not yet ended sends from it."""
    await usecase.delete_sender(request.app["pool"], request["account"]["id"], request.match_info["address"])
    return web.Response(status=204)
