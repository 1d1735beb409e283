"""Importing contacts from a CSV stream into an account (the API's upload and the dashboard's)."""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from shared.contact_import import WRITERS, ImportSummary, import_csv
from shared.db import imports
from shared.domain import contacts as rules
from shared.errors import Invalid, TooManyRequests

log = structlog.get_logger()

#: Seconds a client refused for too many imports at once waits before it tries again.
RETRY_AFTER_S = 30


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


async def import_contacts(
    pool: asyncpg.Pool,
    account_id: str,
    chunks: AsyncIterator[bytes],
    *,
    group_id: str | None,
    country: str | None,
    charset: str | None,
    concurrency: int,
) -> ImportSummary:
    """Upsert every good row on phone/email (into `group_id` too), reporting the bad ones by line;
    TooManyRequests while the account already runs `concurrency` imports (on any API replica)."""
    region = _region(country)
    encoding = _encoding(charset)
    async with contextlib.AsyncExitStack() as stack:
        # the slot first, on the first writer's connection: a refused import holds no other
        first = await stack.enter_async_context(pool.acquire())
        slot = await imports.take_slot(first, account_id, concurrency)
        if slot is None:
            raise TooManyRequests(
                f"{concurrency} import(s) of this account under way: the most at once (CAMPAIGNS_IMPORT_CONCURRENCY)",
                details=[{"field": "body", "reason": f"at most {concurrency} import(s) at once: retry when one ends"}],
                extra={"limit": concurrency},
                retry_after=RETRY_AFTER_S,
            )
        stack.push_async_callback(imports.release_slot, first, account_id, slot)
        conns: list[Any] = [first] + [await stack.enter_async_context(pool.acquire()) for _ in range(WRITERS - 1)]
        summary = await import_csv(conns, account_id, chunks, group_id=group_id, country=region, encoding=encoding)
    log.info(
        "contacts.imported",
        rows=summary.rows,
        created=summary.created,
        updated=summary.updated,
        rejected=summary.rejected,
    )
    return summary
