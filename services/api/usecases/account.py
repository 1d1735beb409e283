"""The account (balance, prices, defaults) and its sender identities."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from shared.db import accounts, senders
from shared.db.connection import Executor
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.zones import is_valid_zone
from shared.errors import Conflict, Invalid, NotFound

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


async def view(pool: asyncpg.Pool, account_id: str) -> dict[str, Any]:
    """The account's row as a dict, with `reserved`: what its launched campaigns hold back."""
    row = await accounts.get(pool, account_id)
    if row is None:
        raise NotFound(f"account {account_id!r} not found")
    return {**dict(row), "reserved": await senders.reserved(pool, account_id)}


async def update(pool: asyncpg.Pool, account_id: str, patch: AccountPatch) -> dict[str, Any]:
    """Change the default time zone and the legal quiet-hours policy."""
    if patch.default_timezone is not None and not is_valid_zone(patch.default_timezone):
        raise Invalid("bad time zone", details=[{"field": "default_timezone", "reason": "not an IANA time zone name"}])
    await senders.update_account(pool, account_id, patch.default_timezone, patch.quiet_hours)
    return await view(pool, account_id)


async def add_sender(pool: asyncpg.Pool, account_id: str, body: SenderIn) -> asyncpg.Record:
    """Add a sender identity (`created` says whether it is new). Verified at once: in sandbox mode
    by definition, with live Twilio because Twilio itself refuses a sender the account does not own."""
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
    return await senders.insert(pool, account_id, kind, address)


async def delete_sender(pool: asyncpg.Pool, account_id: str, address: str) -> None:
    """Remove a sender; NotFound, or Conflict while a campaign not yet ended sends from it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await senders.delete(conn, account_id, address):
            raise NotFound(f"sender {address!r} not found")
        using = await senders.campaign_sending_from(conn, account_id, address)
        if using is not None:  # rolls the delete back
            raise Conflict(f"campaign {using!r} sends from {address!r}: it stays a sender until that campaign ends")


async def is_allowed_sender(conn: Executor, account_id: str, address: str, defaults: tuple[str, ...]) -> bool:
    """Whether the account may send from `address` (a verified identity, or a platform default);
    email addresses compare without case."""
    if "@" in address:
        address = address.lower()
    if address in {d.lower() if "@" in d else d for d in defaults}:
        return True
    return await senders.is_verified(conn, account_id, address)
