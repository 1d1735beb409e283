"""CSV contact import, streamed: chunks of bytes in, batches upserted, a summary out.

Shared by `POST /contacts/import` and `campaigns contacts import`. Memory stays at about two
batches: while one batch is written to PostgreSQL, the next is parsed and validated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from shared.db import imports as db
from shared.db.pool import connect
from shared.domain.contact_csv import Columns, CsvRecords, HeaderError, StagedRow, map_header, validate_row
from shared.errors import Invalid, NotFound

#: Rows upserted per transaction.
BATCH_ROWS = 5000
#: Errors listed in the summary (the rest are only counted).
MAX_LISTED_ERRORS = 1000
#: Rows parsed between two turns of the event loop (the batch in flight advances in each).
YIELD_EVERY = 100
#: Bytes read from a file at a time.
READ_SIZE = 1 << 20


@dataclass
class ImportSummary:
    """What an import did; `as_dict()` is the API's and the CLI's answer."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_not_listed: int = 0

    def error(self, line: int, field_name: str, reason: str) -> None:
        """Record one problem of one line (listed while there is room, else counted)."""
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"line": line, "field": field_name, "reason": reason})
        else:
            self.errors_not_listed += 1

    def as_dict(self) -> dict[str, Any]:
        """`{"rows", "created", "updated", "duplicates", "rejected", "errors", "errors_not_listed"}`."""
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "duplicates": self.rows - self.rejected - self.created - self.updated,
            "rejected": self.rejected,
            "errors": sorted(self.errors, key=lambda e: e["line"]),
            "errors_not_listed": self.errors_not_listed,
        }


class _Writer:
    """Upserts batches one at a time, in the background of the parsing of the next one."""

    def __init__(self, conn: asyncpg.Connection, account_id: str, columns: Columns, group_id: str | None, started: Any, summary: ImportSummary):
        self._args = (conn, account_id)
        self._columns = columns
        self._group_id = group_id
        self._started = started
        self._summary = summary
        self._task: asyncio.Task[None] | None = None

    async def submit(self, rows: list[StagedRow]) -> None:
        """Wait for the batch in flight, then start writing `rows`."""
        await self.drain()
        self._task = asyncio.create_task(self._write(rows))

    async def drain(self) -> None:
        """Wait for the batch in flight (re-raising its error)."""
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def cancel(self) -> None:
        """Stop the batch in flight (on error or cancellation)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self, rows: list[StagedRow]) -> None:
        conn, account_id = self._args
        result = await db.upsert_batch(conn, account_id, rows, self._columns.metadata_keys, self._group_id, self._started)
        self._summary.created += result.created
        self._summary.updated += result.updated
        for line, email, other in result.clashes:
            self._summary.rejected += 1
            owner = f" (phone {other})" if other else ""
            self._summary.error(line, "email", f"{email!r} already belongs to another contact{owner}")


async def import_csv(
    conn: asyncpg.Connection,
    account_id: str,
    chunks: AsyncIterable[bytes],
    *,
    group_id: str | None = None,
    country: str | None = None,
    encoding: str = "utf-8",
    batch_rows: int = BATCH_ROWS,
) -> ImportSummary:
    """Import CSV contacts from `chunks` into the account (and `group_id`); good rows are kept.

    Raises NotFound for another account's group and Invalid for a header without a phone or
    email column (nothing is written then); row problems go into the summary.
    """
    if group_id is not None and not await db.group_exists(conn, account_id, group_id):
        raise NotFound(f"contact group {group_id!r} not found", details=[{"field": "group_id", "reason": "no such group"}])
    summary = ImportSummary()
    records = CsvRecords(encoding)
    columns: Columns | None = None
    writer: _Writer | None = None
    batch: list[StagedRow] = []
    started = await db.begin(conn)
    try:
        async for item in _with_end(chunks):
            for line, cells, problem in records.feed(item or b"", final=item is None):
                if problem is not None:
                    summary.rows += 1
                    summary.rejected += 1
                    summary.error(line, "row", problem)
                    continue
                if columns is None:
                    try:
                        columns = map_header(cells)
                    except HeaderError as exc:
                        raise Invalid(str(exc), details=[{"field": "header", "reason": str(exc)}]) from None
                    writer = _Writer(conn, account_id, columns, group_id, started, summary)
                    continue
                summary.rows += 1
                row, problems = validate_row(cells, columns, line, country)
                if row is None:
                    summary.rejected += 1
                    for field_name, reason in problems:
                        summary.error(line, field_name, reason)
                    continue
                batch.append(row)
                if len(batch) % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the batch in flight take its next round trip
                if len(batch) >= batch_rows:
                    await writer.submit(batch)  # type: ignore[union-attr]
                    batch = []
        if columns is None:
            raise Invalid("the file is empty: a header row is needed", details=[{"field": "header", "reason": "missing"}])
        if batch:
            await writer.submit(batch)  # type: ignore[union-attr]
        await writer.drain()  # type: ignore[union-attr]
    except BaseException:
        if writer is not None:
            await writer.cancel()
        with contextlib.suppress(Exception):  # the connection may be unusable now; the pool resets it
            await db.end(conn)
        raise
    await db.end(conn)
    return summary


async def _with_end(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes | None]:
    """The chunks, then None (the end)."""
    async for chunk in chunks:
        if chunk:
            yield chunk
    yield None


async def read_file(path: Path, on_read: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """A file's bytes in READ_SIZE chunks, yielding to the event loop between them."""
    with path.open("rb") as handle:
        while chunk := handle.read(READ_SIZE):
            if on_read is not None:
                on_read(len(chunk))
            yield chunk
            await asyncio.sleep(0)


async def import_file(
    database_url: str,
    account_id: str,
    path: Path,
    *,
    group_id: str | None = None,
    country: str | None = None,
    encoding: str = "utf-8",
    on_read: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a CSV file straight into the database (the CLI's way)."""
    conn = await connect(database_url)
    try:
        if not await db.account_exists(conn, account_id):
            raise NotFound(f"account {account_id!r} not found")
        return await import_csv(
            conn, account_id, read_file(path, on_read), group_id=group_id, country=country, encoding=encoding
        )
    finally:
        await conn.close()
