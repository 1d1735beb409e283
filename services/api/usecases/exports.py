"""A campaign's deliveries as CSV, streamed: read in pages by id (no transaction or connection held
between pages, so an export of a million rows holds nothing up), written as each page comes."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import campaigns as db

#: Rows read per page.
PAGE = 2_000
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
#: A number as people write one (a phone number, an amount): safe to leave as it is.
_NUMBER = re.compile(r"[+-]?[\d .()-]*")


def cell(value: Any) -> str:
    """One value as a CSV cell. Times are ISO 8601 in UTC. Text that a spreadsheet would run as a
    formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return, and is not simply a
    number such as `+14155550123`) gets a leading `'`, as OWASP advises: a contact's name or a
    reply is the contact's to write."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (int, Decimal)):
        return str(value)
    text = str(value)
    if text and text[0] in "=+-@\t\r" and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


async def deliveries_csv(
    pool: asyncpg.Pool, campaign_id: str, *, state: str | None, run_id: str | None
) -> AsyncIterator[str]:
    """The header line, then a chunk of lines per page of the campaign's deliveries (a campaign of
    the caller's account), in id order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for header, _ in COLUMNS])
    after = None
    while True:
        rows = await db.export_page(pool, campaign_id, state=state, run_id=run_id, after=after, limit=PAGE)
        writer.writerows([cell(row[field]) for _, field in COLUMNS] for row in rows)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < PAGE:
            return
        after = rows[-1]["id"]
