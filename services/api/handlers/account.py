"""`/account` (balance, prices, defaults) and `/senders` (verified sender identities)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.api.handlers.common import iso, read_model
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.zones import is_valid_zone
from shared.errors import Conflict, Invalid, NotFound
from shared.web import json_response

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RESERVED = "SELECT COALESCE(sum(reserved), 0) FROM campaigns WHERE account_id = $1"
_UPDATE_ACCOUNT = """
UPDATE accounts SET default_timezone = COALESCE($2, default_timezone), quiet_hours = COALESCE($3, quiet_hours)
WHERE id = $1 RETURNING *
"""
_INSERT_SENDER = """
INSERT INTO sender_identities (account_id, kind, address, verified_at) VALUES ($1, $2, $3, now())
ON CONFLICT (account_id, kind, address) DO UPDATE SET verified_at = COALESCE(sender_identities.verified_at, now())
RETURNING *, (xmax = 0) AS created
"""
_SENDERS = "SELECT * FROM sender_identities WHERE account_id = $1 ORDER BY created_at, address"
_DELETE_SENDER = "DELETE FROM sender_identities WHERE account_id = $1 AND address = $2 RETURNING address"
_SENDER_IN_USE = """
SELECT id FROM campaigns
WHERE account_id = $1 AND lower(from_number) = lower($2)
  AND status NOT IN ('completed', 'cancelled', 'failed')
LIMIT 1
"""


class AccountPatch(BaseModel):
    """`PATCH /account`."""

    model_config = ConfigDict(extra="forbid")

    default_timezone: str | None = None
    quiet_hours: bool | None = None


class SenderIn(BaseModel):
    """`POST /senders`: a phone number or an email address to send from."""

    model_config = ConfigDict(extra="ignore")

    phone: str | None = None
    email: str | None = None
    address: str | None = None


async def _account_body(request: web.Request, row: Any) -> dict[str, Any]:
    reserved = await request.app["pool"].fetchval(_RESERVED, row["id"])
    return {
        "id": row["id"],
        "name": row["name"],
        "balance": str(row["balance"]),
        "reserved": str(reserved),
        "prices": {
            "sms": str(row["price_sms"]),
            "email": str(row["price_email"]),
            "voice_minute": str(row["price_voice_minute"]),
        },
        "default_timezone": row["default_timezone"],
        "quiet_hours": row["quiet_hours"],
        "created_at": iso(row["created_at"]),
    }


async def get_account(request: web.Request) -> web.Response:
    """`GET /account`: balance (what launched campaigns hold back is `reserved`), prices, defaults."""
    row = await request.app["pool"].fetchrow("SELECT * FROM accounts WHERE id = $1", request["account"]["id"])
    return json_response(await _account_body(request, row))


async def update_account(request: web.Request) -> web.Response:
    """`PATCH /account`: the default time zone and the legal quiet-hours policy."""
    patch = await read_model(request, AccountPatch)
    if patch.default_timezone is not None and not is_valid_zone(patch.default_timezone):
        raise Invalid("bad time zone", details=[{"field": "default_timezone", "reason": "not an IANA time zone name"}])
    row = await request.app["pool"].fetchrow(
        _UPDATE_ACCOUNT, request["account"]["id"], patch.default_timezone, patch.quiet_hours
    )
    return json_response(await _account_body(request, row))


def sender_body(row: Any) -> dict[str, Any]:
    """A sender identity as the API shows it."""
    return {
        "kind": row["kind"],
        "address": row["address"],
        "verified": row["verified_at"] is not None,
        "verified_at": iso(row["verified_at"]),
        "created_at": iso(row["created_at"]),
    }


async def add_sender(request: web.Request) -> web.Response:
    """`POST /senders` → 201 (200 when it was there already). Verified at once: in sandbox mode by
    definition, with live Twilio because Twilio itself refuses a sender the account does not own."""
    body = await read_model(request, SenderIn)
    given = [name for name in ("phone", "email", "address") if getattr(body, name)]
    if len(given) > 1:  # two would be two senders: one each, so that neither is dropped
        raise Invalid(
            "give one sender per request",
            details=[{"field": name, "reason": "one of phone, email or address, not several"} for name in given],
        )
    raw = body.phone or body.email or body.address
    if not raw:
        raise Invalid(
            "give a phone or an email", details=[{"field": "phone", "reason": "a phone or an email is required"}]
        )
    if "@" in raw:
        if not _EMAIL.match(raw):
            raise Invalid("bad email", details=[{"field": "email", "reason": f"{raw!r} is not a valid email address"}])
        kind, address = "email", raw.strip().lower()
    else:
        try:
            kind, address = "phone", to_e164(raw)
        except InvalidPhone as exc:
            raise Invalid("bad phone", details=[{"field": "phone", "reason": str(exc)}]) from exc
    row = await request.app["pool"].fetchrow(_INSERT_SENDER, request["account"]["id"], kind, address)
    return json_response(sender_body(row), status=201 if row["created"] else 200)


async def list_senders(request: web.Request) -> web.Response:
    """`GET /senders`."""
    rows = await request.app["pool"].fetch(_SENDERS, request["account"]["id"])
    return json_response({"data": [sender_body(r) for r in rows], "next_cursor": None})


async def delete_sender(request: web.Request) -> web.Response:
    """`DELETE /senders/{address}` → 204; 409 while a campaign not yet ended sends from it."""
    address = request.match_info["address"]
    account_id = request["account"]["id"]
    async with request.app["pool"].acquire() as conn, conn.transaction():
        if await conn.fetchval(_DELETE_SENDER, account_id, address) is None:
            raise NotFound(f"sender {address!r} not found")
        using = await conn.fetchval(_SENDER_IN_USE, account_id, address)
        if using is not None:  # rolls the delete back
            raise Conflict(f"campaign {using!r} sends from {address!r}: it stays a sender until that campaign ends")
    return web.Response(status=204)


async def is_allowed_sender(conn: Any, account_id: str, address: str, defaults: tuple[str, ...]) -> bool:
    """Whether the account may send from `address` (a verified identity, or a platform default);
    email addresses compare without case."""
    if "@" in address:
        address = address.lower()
    if address in {d.lower() if "@" in d else d for d in defaults}:
        return True
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM sender_identities WHERE account_id = $1 AND address = $2 AND verified_at IS NOT NULL",
            account_id,
            address,
        )
    )
