"""Webhook endpoints: an account's URLs that receive its events, signed (see
services/tracker/outbound_webhooks.py for the sending)."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.db import webhooks as db
from shared.domain.times import iso
from shared.domain.webhooks import EVENTS, new_secret, unknown_events
from shared.errors import Invalid, NotFound
from shared.ids import new_id
from shared.outbound import OutboundPolicy, OutboundRefused

log = structlog.get_logger()


class EndpointIn(BaseModel):
    """`POST /webhook-endpoints`: where to POST which events (`"*"`: all of them)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="An http(s) URL at a public address")
    events: list[str] = Field(min_length=1, max_length=len(EVENTS) + 1, description=f"Of {', '.join(EVENTS)}; or '*'")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        return _http_url(url)


class EndpointPatch(BaseModel):
    """`PATCH /webhook-endpoints/{id}`: its URL, events, or `enabled` (enabling one the platform
    disabled forgets why)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=len(EVENTS) + 1)
    enabled: StrictBool | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url)


def _http_url(url: str) -> str:
    """The scheme checked with the other fields (one answer names every bad one); where it points,
    by `_check`, once they are all right."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return url


async def _check(outbound: OutboundPolicy, url: str | None, events: list[str] | None) -> None:
    """422 naming a URL not reachable from here (its scheme is checked by the models), and each
    unknown event."""
    errors: list[dict[str, str]] = []
    if url is not None:
        try:
            await outbound.check_url(url)
        except OutboundRefused as exc:
            errors.append({"field": "url", "reason": f"not reachable from here: {exc}"})
    for name in unknown_events(events or []):
        errors.append({"field": "events", "reason": f"unknown event {name!r} (one of {', '.join(EVENTS)}, or '*')"})
    if errors:
        raise Invalid("the webhook endpoint is not valid", details=errors)


async def create(
    pool: asyncpg.Pool, account_id: str, body: EndpointIn, outbound: OutboundPolicy
) -> tuple[asyncpg.Record, str]:
    """A new endpoint, and its signing secret (shown once)."""
    await _check(outbound, body.url, body.events)
    secret = new_secret()
    events = list(dict.fromkeys(body.events))
    row = await db.insert_endpoint(pool, new_id("webhook_endpoint"), account_id, body.url, events, secret)
    log.info("webhook_endpoint.created", endpoint_id=row["id"], events=events)
    return row, secret


async def get(pool: asyncpg.Pool, account_id: str, endpoint_id: str) -> asyncpg.Record:
    """One of the account's endpoints; NotFound otherwise."""
    row = await db.get_endpoint(pool, account_id, endpoint_id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
    return row


async def update(
    pool: asyncpg.Pool, account_id: str, endpoint_id: str, patch: EndpointPatch, outbound: OutboundPolicy
) -> asyncpg.Record:
    """Change an endpoint; NotFound, or 422 as a create."""
    await get(pool, account_id, endpoint_id)
    await _check(outbound, patch.url, patch.events)
    events = list(dict.fromkeys(patch.events)) if patch.events is not None else None
    row = await db.update_endpoint(pool, account_id, endpoint_id, patch.url, events, patch.enabled)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
    return row


async def delete(pool: asyncpg.Pool, account_id: str, endpoint_id: str) -> None:
    """Delete an endpoint (what it was owed is dropped); NotFound otherwise."""
    if not await db.delete_endpoint(pool, account_id, endpoint_id):
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")


async def attempts(
    pool: asyncpg.Pool, account_id: str, endpoint_id: str, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """An endpoint's recent attempts, newest first; NotFound for another account's."""
    await get(pool, account_id, endpoint_id)
    return await db.attempts(pool, endpoint_id, before, limit)


def as_body(row: asyncpg.Record) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret; times as the rest of the API: seconds, Z)."""
    return {
        "id": row["id"],
        "url": row["url"],
        "events": list(row["events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "failing_since": iso(row["failing_since"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
