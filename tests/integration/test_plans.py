"""Prepared statements at the real PostgreSQL: the tracker's batch read, first planned while a
fresh database's `deliveries` held a launch's first few rows, is planned again once the table has
grown, instead of scanning every row at every batch of a large campaign."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.db import accounts, deliveries, tracking
from shared.db.pool import connect, create_pool
from tests.conftest import Infra, own_database

_SEQ_SCANS = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'deliveries'"
_BATCH = 35  # callbacks in a busy tracker's batch


@pytest.fixture
def fresh(infra: Infra) -> Iterator[str]:
    """A migrated database of its own, whose `deliveries` has never been analyzed."""
    with own_database(infra, "plans") as url:
        yield url


async def _add_deliveries(conn: asyncpg.Connection, account_id: str, first: int, last: int) -> None:
    now = datetime.now(UTC)
    await deliveries.copy_planned(
        conn,
        [
            (
                f"dlv_p{k:08d}",
                "run_p",
                "camp_p",
                account_id,
                f"ct_{k}",
                "sms",
                f"+1415555{k:04d}",
                "planned",
                now,
                None,
                None,
            )
            for k in range(first, last)
        ],
    )


async def _seed(url: str) -> str:
    conn = await connect(url)
    try:
        # no ANALYZE by autovacuum in the middle (one would invalidate the plan: this database's own)
        await conn.execute("ALTER TABLE deliveries SET (autovacuum_enabled = false)")
        account_id = await accounts.create_account(conn, "plans", 100)
        await conn.execute("INSERT INTO agents (id, account_id, name) VALUES ('ag_p', $1, 'Riley')", account_id)
        await conn.execute(
            "INSERT INTO campaigns (id, account_id, name, agent_id, channel, status, timezone)"
            " VALUES ('camp_p', $1, 'plans', 'ag_p', 'sms', 'running', 'UTC')",
            account_id,
        )
        await conn.execute(
            "INSERT INTO runs (id, campaign_id, account_id, seq, status) VALUES ('run_p', 'camp_p', $1, 1, 'planned')",
            account_id,
        )
        await _add_deliveries(conn, account_id, 0, 50)  # a launch's first planned deliveries
        return account_id
    finally:
        await conn.close()


async def _read_batches(pool: asyncpg.Pool, times: int) -> None:
    ids = [f"dlv_p{k:08d}" for k in range(_BATCH)]
    for _ in range(times):
        assert len(await tracking.for_statuses(pool, ids, [])) == _BATCH


async def _seq_scans(pool: asyncpg.Pool) -> int:
    await pool.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, visible now
    return int(await pool.fetchval(_SEQ_SCANS))


async def _scans_after_growth(url: str, lifetime_s: int) -> int:
    """Sequential scans of `deliveries` by 20 batch reads, made on a table grown from 50 rows to
    60,000 since the read was first planned, 1.2 s earlier."""
    account_id = await _seed(url)
    async with create_pool(url, 1, 1, statement_lifetime_s=lifetime_s) as pool:
        await _read_batches(pool, 10)  # five plans for the parameters, then the generic one
        async with pool.acquire() as conn:
            await _add_deliveries(conn, account_id, 50, 60_000)
        await asyncio.sleep(1.2)  # a statement lifetime of 1 s passing is what is under test
        before = await _seq_scans(pool)
        await _read_batches(pool, 20)
        return await _seq_scans(pool) - before


async def test_the_trackers_read_is_planned_again_once_deliveries_has_grown(fresh: str):
    assert await _scans_after_growth(fresh, lifetime_s=1) == 0


async def test_kept_for_good_the_plan_made_on_a_tiny_table_scans_every_row(fresh: str):
    # what the setting is for: a lifetime longer than the test keeps the first plan, a full scan
    assert await _scans_after_growth(fresh, lifetime_s=300) == 20
