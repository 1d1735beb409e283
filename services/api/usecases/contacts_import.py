"""Importing contacts from a CSV stream into an account (the API's upload and the dashboard's)."""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from shared.contact_import import WRITERS, ImportSummary, import_csv
from shared.domain import contacts as rules
from shared.errors import Invalid

log = structlog.get_logger()


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
) -> ImportSummary:
    """Upsert every good row on phone/email (into `group_id` too), reporting the bad ones by line."""
    region = _region(country)
    encoding = _encoding(charset)
    async with contextlib.AsyncExitStack() as stack:
        conns: list[Any] = [await stack.enter_async_context(pool.acquire()) for _ in range(WRITERS)]
        summary = await import_csv(conns, account_id, chunks, group_id=group_id, country=region, encoding=encoding)
    log.info(
        "contacts.imported",
        rows=summary.rows,
        created=summary.created,
        updated=summary.updated,
        rejected=summary.rejected,
    )
    return summary
