"""CSV contact import, streamed: chunks of bytes in, batches upserted, a summary out.

Shared by `POST /contacts/import` and `campaigns contacts import`. Memory stays at a few
batches: while batches are written to PostgreSQL (on WRITERS connections), the next ones are
parsed and validated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from shared.db import imports as db
from shared.db.pool import connect
from shared.domain.contact_csv import (
    CsvRecords,
    HeaderError,
    RecordProblem,
    StagedRow,
    StagerResult,
    line_of,
    map_header,
    row_stager,
)
from shared.errors import Invalid, NotFound

#: Connections writing side by side. New contacts go in by COPY, which one connection keeps up
#: with; upserts (a re-import) cost PostgreSQL more, and a second connection takes a fifth off
#: those. A third gained nothing more on 2 cores and slowed a first import (benchmarks/README.md).
WRITERS = 2
#: Batches queued on one connection before the parsing waits for it.
IN_FLIGHT = 2
#: Rows upserted per transaction.
BATCH_ROWS = 20000
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


class _Lane:
    """One writing connection: the batch being filled, batches cut and waiting, and the batches
    in flight (written one after another). A batch never holds two rows of one phone (or email):
    the upsert needs no de-duplication, and a repeated row starts the next batch, so the last row
    of a contact wins.
    """

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn
        self.tasks: collections.deque[asyncio.Task[None]] = collections.deque()  # in flight, in order
        self.ready: list[list[StagedRow]] = []
        self.all_new = True  # every batch so far held only new contacts: try the next as such too
        self.clashed = False  # a batch met an email of another contact: settle emails before upserting
        self._new_batch()

    def _new_batch(self) -> None:
        self.rows: list[StagedRow] = []
        self.keys: set[str] = set()

    def cut(self) -> None:
        """Move the batch being filled to `ready`."""
        if self.rows:
            self.ready.append(self.rows)
            self._new_batch()


class _Writers:
    """Upserts batches on one or more connections, in the background of the parsing.

    Rows are dealt to a connection by their phone (else email), so every row of one contact goes
    the same way and in file order: the last one wins. Up to IN_FLIGHT batches queue on each
    connection, so the parsing seldom waits. Batches are first tried as new contacts, COPYed
    straight into the table (a first import); a lane that meets an existing contact upserts from
    then on. A staged row holds only strings and bytes, which the garbage collector stops tracking.
    """

    def __init__(
        self,
        conns: Sequence[asyncpg.Connection],
        summary: ImportSummary,
        batch_rows: int,
        ids_from: int,
        **upsert: Any,
    ):
        self._lanes = [_Lane(conn) for conn in conns]
        self._ids_from = ids_from
        self._upsert = upsert
        self._summary = summary
        self._batch_rows = batch_rows

    def add(self, row: StagedRow) -> _Lane | None:
        """Queue a row; the lane that now has batches to `submit`, if any."""
        key = row[2] or row[3]  # the phone, else the email
        lane = self._lanes[hash(key) % len(self._lanes)]
        if key in lane.keys:
            lane.cut()
        lane.rows.append(row)
        lane.keys.add(key)  # type: ignore[arg-type]  # a staged row has a phone or an email
        if len(lane.rows) >= self._batch_rows:
            lane.cut()
        return lane if lane.ready else None

    async def finish(self) -> None:
        """Write what is left and wait for every batch (re-raising the first error)."""
        for lane in self._lanes:
            lane.cut()
            await self.submit(lane)
        for lane in self._lanes:
            await self._wait(lane)

    async def cancel(self) -> None:
        """Stop the batches in flight (on error or cancellation)."""
        tasks = [task for lane in self._lanes for task in lane.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # also collects a failed batch's error

    async def submit(self, lane: _Lane) -> None:
        """Queue the lane's ready batches behind the ones in flight on its connection; waits only
        while IN_FLIGHT batches are already queued there."""
        while lane.ready:
            while len(lane.tasks) >= IN_FLIGHT:
                await lane.tasks.popleft()
            previous = lane.tasks[-1] if lane.tasks else None
            lane.tasks.append(asyncio.create_task(self._write(lane, lane.ready.pop(0), previous)))

    @staticmethod
    async def _wait(lane: _Lane) -> None:
        while lane.tasks:
            await lane.tasks.popleft()

    async def _write(self, lane: _Lane, batch: list[StagedRow], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous  # one statement at a time on a connection; a failed batch fails the rest
        result = await db.upsert_batch(
            lane.conn, batch, all_new=lane.all_new, settle_first=lane.clashed, **self._upsert
        )
        lane.all_new = result.all_new
        lane.clashed = lane.clashed or bool(result.clashes)
        self._summary.created += result.created
        self._summary.updated += result.updated
        for staged_id, email, other in result.clashes:
            self._summary.rejected += 1
            owner = f" (phone {other})" if other else ""
            line = line_of(self._ids_from, staged_id)
            self._summary.error(line, "email", f"{email!r} already belongs to another contact{owner}")


async def import_csv(
    conns: Sequence[asyncpg.Connection],
    account_id: str,
    chunks: AsyncIterable[bytes],
    *,
    group_id: str | None = None,
    country: str | None = None,
    encoding: str = "utf-8",
    batch_rows: int = BATCH_ROWS,
) -> ImportSummary:
    """Import CSV contacts from `chunks` into the account (and `group_id`) over `conns` (one or
    more connections writing side by side); good rows are kept.

    Raises NotFound for another account's group and Invalid for a header without a phone or
    email column or naming a column twice (nothing is written then); row problems go into the
    summary.
    """
    if group_id is not None and not await db.group_exists(conns[0], account_id, group_id):
        raise NotFound(
            f"contact group {group_id!r} not found", details=[{"field": "group_id", "reason": "no such group"}]
        )
    summary = ImportSummary()
    records = CsvRecords(encoding)
    writers: _Writers | None = None
    stage: Callable[[list[str], int], StagerResult] | None = None
    try:
        async for item in _with_end(chunks):
            batch = records.feed(item or b"", final=item is None)
            if writers is None:
                started = await _start(batch, conns, summary, batch_rows, account_id, group_id, country)
                if started is None:
                    continue
                stage, writers = started
            assert stage is not None
            add, submit, rows = writers.add, writers.submit, 0
            for line, cells, problem in batch:
                summary.rows += 1
                row, problems = stage(cells, line) if problem is None else (None, [_problem(problem)])
                if row is None:
                    summary.rejected += 1
                    for field_name, reason in problems:
                        summary.error(line, field_name, reason)
                    continue
                full = add(row)
                if full is not None:
                    await submit(full)
                rows += 1
                if rows % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the batches in flight take their next round trip
        if writers is None:
            raise Invalid(
                "the file is empty: a header row is needed",
                details=[{"field": "header", "reason": "required: the file is empty (was one chosen?)"}],
            )
        await writers.finish()
    except BaseException:
        if writers is not None:
            await writers.cancel()
        for conn in conns:
            with contextlib.suppress(Exception):  # the connection may be unusable now; the pool resets it
                await db.end(conn)
        raise
    for conn in conns:
        await db.end(conn)
    return summary


async def _start(
    records: Iterator[tuple[int, list[str], str | None]],
    conns: Sequence[asyncpg.Connection],
    summary: ImportSummary,
    batch_rows: int,
    account_id: str,
    group_id: str | None,
    country: str | None,
) -> tuple[Callable[[list[str], int], StagerResult], _Writers] | None:
    """The row stager and the writers for the file's header: its first readable record, taken
    from `records` (the rest are left there); None while no header has come. Invalid for a
    header without a phone or email column, or naming a column twice."""
    for line, cells, problem in records:
        if problem is None:
            header = cells
            break
        summary.rows += 1  # unreadable records before the header
        summary.rejected += 1
        summary.error(line, *_problem(problem))
    else:
        return None
    try:
        columns = map_header(header)
    except HeaderError as exc:
        raise Invalid(str(exc), details=[{"field": "header", "reason": reason} for reason in exc.reasons]) from None
    started = min([await db.begin(conn) for conn in conns])
    ids_from = db.id_base()
    writers = _Writers(conns, summary, batch_rows, ids_from, account_id=account_id, group_id=group_id, started=started)
    return row_stager(columns, country, account_id, ids_from), writers


def _problem(problem: str) -> tuple[str, str]:
    """(field, reason) of a record that could not be read."""
    return (problem.field if isinstance(problem, RecordProblem) else "row"), problem


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
    conns: list[asyncpg.Connection] = []
    try:
        for _ in range(WRITERS):
            conns.append(await connect(database_url))
        if not await db.account_exists(conns[0], account_id):
            raise NotFound(f"account {account_id!r} not found")
        return await import_csv(
            conns, account_id, read_file(path, on_read), group_id=group_id, country=country, encoding=encoding
        )
    finally:
        for conn in conns:
            await conn.close()
