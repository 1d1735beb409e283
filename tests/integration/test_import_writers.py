"""The import core's connections writing side by side, on the real PostgreSQL: batches of two
connections that wait on each other's rows."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

from shared.contact_import import import_csv
from shared.db.pool import connect
from tests.conftest import Account, Infra

ROWS_PER_LANE = 3000


def _phones_by_lane(lanes: int) -> list[list[str]]:
    """Unique phones, sorted by the connection the import deals each to (by the phone's hash, as
    `_Writers.add` does, in this process)."""
    by_lane: list[list[str]] = [[] for _ in range(lanes)]
    for n in itertools.count():
        phone = f"+1415{5_000_000 + n:07d}"
        by_lane[hash(phone) % lanes].append(phone)
        if min(len(phones) for phones in by_lane) >= ROWS_PER_LANE:
            return [phones[:ROWS_PER_LANE] for phones in by_lane]
    raise AssertionError("unreachable")


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_two_connections_that_deadlock_on_each_others_emails_still_import(db, infra: Infra, account: Account):
    # Connection 0 COPYs a batch that starts with x@ and ends with y@; connection 1, at the same
    # time, one that starts with y@ and ends with x@. Each then waits for the other's uncommitted
    # row: PostgreSQL breaks the deadlock by failing one COPY, whose batch must then be upserted
    # (its two rows with the other's emails refused) instead of failing the import.
    zero, one = _phones_by_lane(2)
    lines = ["phone,email"]
    for i, (a, b) in enumerate(zip(zero, one, strict=True)):
        last = i == ROWS_PER_LANE - 1
        lines.append(f"{a},{'y' if last else 'x' if i == 0 else f'a{i}'}@example.com")
        lines.append(f"{b},{'x' if last else 'y' if i == 0 else f'b{i}'}@example.com")
    conns = [await connect(infra.database_url) for _ in range(2)]
    try:
        summary = await import_csv(conns, account.id, _one_chunk("\n".join(lines).encode()), batch_rows=ROWS_PER_LANE)
    finally:
        for conn in conns:
            await conn.close()

    result = summary.as_dict()
    assert (result["rows"], result["created"], result["rejected"]) == (2 * ROWS_PER_LANE, 2 * ROWS_PER_LANE - 2, 2)
    assert sorted(e["reason"].split("'")[1] for e in result["errors"]) == ["x@example.com", "y@example.com"]
    stored = await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id)
    assert stored == 2 * ROWS_PER_LANE - 2
    owners = await db.fetch(
        "SELECT email, phone FROM contacts WHERE account_id = $1 AND email IN ('x@example.com', 'y@example.com')",
        account.id,
    )
    assert len(owners) == 2
    assert len({r["phone"] in zero for r in owners}) == 1  # both went to the connection that was not failed
