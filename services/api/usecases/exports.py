"""Exports as CSV, streamed: a campaign's deliveries, an account's contacts. Each is read in pages
(no transaction or connection held between pages, so an export of a million rows holds nothing
up) and written as each page comes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import campaigns as db
from shared.db import contacts as contacts_db
from shared.domain.contact_csv import EXPORT_ONLY_COLUMNS, MAX_METADATA_COLUMNS, skipped_column
from shared.domain.times import iso

#: Rows read per page.
PAGE = 2_000
#: Exports that may hold one of the pool's connections at once in a process (a contacts export
#: reads through one cursor): the rest of the pool stays for everything else.
EXPORT_CONNECTIONS = 2
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
#: The export's columns: (header, the row's field).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("delivery_id", "id"),
    ("run", "seq"),
    ("contact_id", "contact_id"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("email", "email"),
    ("phone", "phone"),
    ("company", "company"),
    ("channel", "channel"),
    ("to", "to_address"),
    ("state", "state"),
    ("attempts", "attempts"),
    ("send_at", "send_at"),
    ("queued_at", "queued_at"),
    ("sent_at", "sent_at"),
    ("delivered_at", "delivered_at"),
    ("replied_at", "replied_at"),
    ("failed_at", "failed_at"),
    ("provider_id", "provider_id"),
    ("provider_status", "provider_status"),
    ("answered_by", "answered_by"),
    ("cost", "cost"),
    ("error", "error"),
    ("message", "rendered"),
)
#: A contacts export's columns before its metadata (what an import reads back), and after it (what
#: an import skips).
CONTACT_FIELDS = ("phone", "email", "first_name", "last_name", "company", "timezone")
CONTACT_EXTRAS = EXPORT_ONLY_COLUMNS
#: A number as people write one (a phone number, an amount): safe to leave as it is.
_NUMBER = re.compile(r"[+-]?[\d .()-]*")


def cell(value: Any) -> str:
    """One value as a CSV cell. Times are ISO 8601 in UTC to the second, as the JSON API writes them
    (`2026-03-10T09:00:00Z`). Text that a spreadsheet would run as a
    formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return, and is not simply a
    number such as `+14155550123`) gets a leading `'`, as OWASP advises: a contact's name or a
    reply is the contact's to write."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value) or ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (dict, list, float)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text and text[0] in "=+-@\t\r" and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


async def deliveries_csv(
    pool: asyncpg.Pool, campaign_id: str, *, state: str | None, run_id: str | None
) -> AsyncGenerator[str, None]:
    """The header line, then a chunk of lines per page of the campaign's deliveries (a campaign of
    the caller's account), in id order."""

    async def pages() -> AsyncIterator[list[asyncpg.Record]]:
        after = None
        while True:
            rows = await db.export_page(pool, campaign_id, state=state, run_id=run_id, after=after, limit=PAGE)
            yield rows
            if len(rows) < PAGE:
                return
            after = rows[-1]["id"]

    async for chunk in _lines([header for header, _ in COLUMNS], pages(), lambda row: [row[f] for _, f in COLUMNS]):
        yield chunk


async def contacts_csv(
    pool: asyncpg.Pool, account_id: str, *, group_id: str | None, opted_out: str | None
) -> AsyncGenerator[str, None]:
    """The account's contacts (of one group, opted out of one channel), newest first: the columns
    an import reads (phone, email, names, company, time zone, then each metadata key), then those
    it skips (id, opt-outs, creation time). Importing the file elsewhere gives the same contacts.

    One read-only snapshot through one cursor (a list's pages would each read an import's whole
    tie group again), on one of the pool's connections for the export's length: at most
    EXPORT_CONNECTIONS such exports at a time in a process, the others wait their turn."""
    async with (
        _export_slots(),
        pool.acquire() as conn,
        conn.transaction(readonly=True, isolation="repeatable_read"),
    ):
        keys = await contacts_db.metadata_keys(
            conn, account_id, group_id=group_id, opted_out=opted_out, limit=MAX_METADATA_COLUMNS
        )
        keys = [k for k in keys if k not in CONTACT_FIELDS and not skipped_column(k)]

        def values(row: asyncpg.Record) -> list[Any]:
            metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
            return [
                *(row[f] for f in CONTACT_FIELDS),
                *(metadata.get(k) for k in keys),
                row["id"],
                *(row[f"opted_out_{channel}"] for channel in ("sms", "email", "voice")),
                row["created_at"],
            ]

        batches = contacts_db.export_rows(conn, account_id, group_id=group_id, opted_out=opted_out, batch=PAGE)
        async for chunk in _lines([*CONTACT_FIELDS, *keys, *CONTACT_EXTRAS], batches, values):
            yield chunk


def _export_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(EXPORT_CONNECTIONS)
    return slots


async def _lines(
    header: Sequence[str],
    batches: AsyncIterator[list[asyncpg.Record]],
    values: Callable[[asyncpg.Record], Sequence[Any]],
) -> AsyncIterator[str]:
    """The header line (with the first batch), then a chunk of lines per batch of rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    empty = True
    async for rows in batches:
        writer.writerows([cell(v) for v in values(row)] for row in rows)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        empty = False
    if empty:
        yield out.getvalue()
