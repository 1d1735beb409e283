"""The account (balance, prices, defaults) and its sender identities."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, field_validator

from shared import admin
from shared.db import accounts, senders
from shared.db.connection import Executor
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.zones import is_valid_zone
from shared.errors import Conflict, Invalid, NotFound, Unavailable
from shared.ids import new_id
from shared.providers.base import ProviderError
from shared.providers.smtp_email import Email, SmtpEmail, message_id
from shared.providers.twilio_client import TwilioClient
from shared.sender_verification import TTL, make_token

log = structlog.get_logger()

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountPatch(BaseModel):
    """`PATCH /account`."""

    model_config = ConfigDict(extra="forbid")

    default_timezone: str | None = None
    quiet_hours: StrictBool | None = None

    @field_validator("default_timezone", "quiet_hours")
    @classmethod
    def _not_null(cls, value: object) -> object:
        """A null sent is refused: the account has no setting to clear (leave the field out to keep it)."""
        if value is None:
            raise ValueError("may not be null: leave the field out to keep the account's setting")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        """Checked here, beside the other fields (so that one answer names every bad one)."""
        if not is_valid_zone(value):
            raise ValueError("not an IANA time zone name")
        return value


class KeyIn(BaseModel):
    """`POST /api-keys`: no field yet (an empty body, or `{}`); any key sent is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")


class SenderIn(BaseModel):
    """`POST /senders`: a phone number or an email address to send from."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = None
    email: str | None = None
    address: str | None = None
    max_per_second: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Sends a second from this sender, across every campaign and dispatcher (fractions "
        "allowed: 0.5 is one every two seconds); unset: the default for its kind of number",
    )


class SenderPatch(BaseModel):
    """`PATCH /senders/{address}`: its rate (`null`: back to the default for its kind)."""

    model_config = ConfigDict(extra="forbid")

    max_per_second: StrictFloat | None = Field(gt=0, le=10_000, description="Sends a second; null: the default")


async def api_keys(pool: asyncpg.Pool, account_id: str, current_hash: bytes) -> list[dict[str, Any]]:
    """The account's API keys, oldest first (revoked ones too): prefix, times, and `current` for
    the key of that hash, the caller's (never a key or its hash)."""
    return [_key_view(r, current_hash) for r in await accounts.keys(pool, account_id)]


async def api_keys_page(
    pool: asyncpg.Pool, account_id: str, current_hash: bytes, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` of those keys after the cursor `(created_at, prefix)`, as `api_keys` shows them."""
    return [_key_view(r, current_hash) for r in await accounts.keys_page(pool, account_id, after, limit)]


def _key_view(row: asyncpg.Record, current_hash: bytes) -> dict[str, Any]:
    return {
        "prefix": row["prefix"],
        "created_at": row["created_at"],
        "revoked_at": row["revoked_at"],
        "current": bytes(row["key_hash"]) == current_hash,
    }


async def issue_key(pool: asyncpg.Pool, account_id: str) -> dict[str, Any]:
    """A new API key for the account (only its hash is kept: the answer is the one time it shows)."""
    key = await accounts.create_key(pool, account_id)
    return {"api_key": key, "prefix": key[:8]}


async def revoke_key(pool: asyncpg.Pool, account_id: str, prefix: str) -> dict[str, Any]:
    """Revoke the account's live key of that prefix (it and its dashboard sessions stop at once);
    never its last live key (409), so that an account cannot lock itself out."""
    async with pool.acquire() as conn, conn.transaction():
        row = await admin.revoke_on(conn, account_id, prefix, keep_one=True)
    return {"prefix": row["prefix"], "created_at": row["created_at"], "revoked_at": row["revoked_at"]}


async def view(pool: asyncpg.Pool, account_id: str) -> dict[str, Any]:
    """The account's row as a dict, with `reserved`: what its launched campaigns hold back."""
    row = await accounts.get(pool, account_id)
    if row is None:
        raise NotFound(f"account {account_id!r} not found")
    return {**dict(row), "reserved": await senders.reserved(pool, account_id)}


async def update(pool: asyncpg.Pool, account_id: str, patch: AccountPatch) -> dict[str, Any]:
    """Change the default time zone and the legal quiet-hours policy (both checked by `AccountPatch`)."""
    await senders.update_account(pool, account_id, patch.default_timezone, patch.quiet_hours)
    return await view(pool, account_id)


@dataclass(frozen=True)
class SenderChecks:
    """What verifying a sender takes: the platform's Twilio account (which numbers it holds), a
    mail relay and key for the signed link, the tracker's public URL that serves it, and the
    platform's shared default senders (available to every account, never one account's)."""

    twilio: TwilioClient
    smtp: SmtpEmail
    key: bytes
    public_url: str
    default_number: str
    default_email: str


async def add_sender(pool: asyncpg.Pool, account_id: str, body: SenderIn, checks: SenderChecks) -> asyncpg.Record:
    """Add a sender identity (`created` says whether it is new). A phone is verified at once when
    the platform's Twilio account owns it or has it as a verified caller ID (else 422); an email
    is pending until its owner opens the signed link mailed to it. An address another account has
    verified is a 409; the platform's defaults are nobody's (422)."""
    kind, address, field = _sender_address(body)
    if address in (checks.default_number, checks.default_email.lower()):
        raise Invalid(
            "the platform's default sender is shared",
            details=[
                {"field": field, "reason": f"{address} is the platform's default: send from it without adding it"}
            ],
        )
    owner = await senders.owner(pool, kind, address)
    if owner is not None and owner != account_id:
        raise Conflict(f"{address} is another account's sender", details=[{"field": field, "reason": "taken"}])
    if kind == "phone" and owner is None:
        await _check_twilio_holds(checks.twilio, address, field)
    try:
        row = await senders.insert(
            pool,
            account_id,
            kind,
            address,
            verified=kind == "phone",
            max_per_second=body.max_per_second,
            rate_given="max_per_second" in body.model_fields_set,
        )
    except asyncpg.UniqueViolationError as exc:  # another account verified it a moment ago
        raise Conflict(f"{address} is another account's sender", details=[{"field": field, "reason": "taken"}]) from exc
    if row["verified_at"] is None:
        await _mail_link(checks, account_id, address)
        log.info("sender.verification_sent", address=address)
    return row


async def set_sender_rate(pool: asyncpg.Pool, account_id: str, address: str, patch: SenderPatch) -> asyncpg.Record:
    """Change a sender's `max_per_second`; NotFound for an address that is not the account's sender."""
    row = await senders.set_rate(pool, account_id, address, patch.max_per_second)
    if row is None:
        raise NotFound(f"sender {address!r} not found")
    log.info("sender.rate_changed", address=row["address"], max_per_second=row["max_per_second"])
    return row


async def _check_twilio_holds(twilio: TwilioClient, number: str, field: str) -> None:
    try:
        held = await twilio.ownership(number)
    except ProviderError as exc:
        raise Unavailable(f"Twilio could not be asked whether it holds {number}: {exc}", retry_after=5) from exc
    if held is None:
        raise Invalid(
            f"{number} is not a number of the platform's Twilio account",
            details=[{"field": field, "reason": "neither bought (IncomingPhoneNumbers) nor a verified caller ID"}],
        )


async def _mail_link(checks: SenderChecks, account_id: str, address: str) -> None:
    """Mail `address` the signed link that verifies it as the account's sender."""
    token = make_token(checks.key, account_id, address, datetime.now(UTC))
    link = f"{checks.public_url.rstrip('/')}/senders/verify/{token}"
    mail = Email(
        sender=checks.default_email,
        to=address,
        subject="Confirm this address as a sender",
        text=(
            f"Someone asked to send campaign emails from {address}.\n\n"
            f"If that was you, confirm it here (the link works for {int(TTL.total_seconds() // 3600)} hours):\n"
            f"{link}\n\nIf it was not, ignore this email: nothing is sent from your address without it.\n"
        ),
        html=None,
        message_id=message_id(new_id("message"), checks.default_email),
        list_unsubscribe=None,
    )
    try:
        await checks.smtp.send_email(mail)
    except ProviderError as exc:
        raise Unavailable(f"the verification email to {address} could not be sent: {exc}", retry_after=30) from exc


def _sender_address(body: SenderIn) -> tuple[str, str, str]:
    """The kind and normalised address of the one sender the request names, and the field that
    named it (`phone` is a phone, `email` an email, `address` either); 422 naming it otherwise."""
    given = [name for name in ("phone", "email", "address") if getattr(body, name)]
    if len(given) > 1:  # two would be two senders: one each, so that neither is dropped
        raise Invalid(
            "give one sender per request",
            details=[{"field": name, "reason": "one of phone, email or address, not several"} for name in given],
        )
    if not given:
        raise Invalid(
            "give a phone or an email", details=[{"field": "phone", "reason": "a phone or an email is required"}]
        )
    field = given[0]
    raw: str = getattr(body, field)
    if field == "email" or (field == "address" and "@" in raw):
        if not _EMAIL.match(raw.strip()):
            raise Invalid(
                f"{raw!r} is not an email address",
                details=[{"field": field, "reason": f"{raw!r} is not an email address"}],
            )
        return "email", raw.strip().lower(), field
    try:
        return "phone", to_e164(raw), field
    except InvalidPhone as exc:
        raise Invalid(f"{raw!r} is not a phone number", details=[{"field": field, "reason": str(exc)}]) from exc


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
