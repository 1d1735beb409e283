"""Prepared statements at the real PostgreSQL: the tracker's batch read, first planned while a
fresh database's `deliveries` held a launch's first few rows, is planned again once the table has
grown, instead of scanning every row at every batch of a large campaign; and the batch writers of
`deliveries` join their rows once, whatever the planner guesses of a batch's size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from shared.db import accounts, contacts, deliveries, sending, tracking
from shared.db.pool import connect, create_pool
from shared.domain.deliveries import fold_sms_statuses
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


_WRITTEN = 300  # deliveries one batch writes


async def _plans(conn: asyncpg.Connection, write: Callable[[], Awaitable[object]]) -> list[dict[str, Any]]:
    """The plans (EXPLAIN ANALYZE, by auto_explain) of the statements `write` runs on `conn`, each
    planned generically, as a long-lived connection's prepared statements end up."""
    plans: list[dict[str, Any]] = []

    def listener(_: object, message: Any) -> None:
        if "plan:" in message.message:
            plans.append(json.loads(message.message.split("plan:", 1)[1])["Plan"])

    await conn.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = 'json'", "log_level = 'notice'"):
        await conn.execute(f"SET auto_explain.{setting}")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.add_log_listener(listener)
    try:
        await write()
    finally:
        conn.remove_log_listener(listener)
        await conn.execute("RESET ALL")
    return plans


def _rescans(node: dict[str, Any]) -> list[str]:
    """The CTE scans a plan runs more than once (one per row of the other side of a join)."""
    loops = node.get("Actual Loops", 0)
    own = [f"{node['CTE Name']} x{loops}"] if node["Node Type"] == "CTE Scan" and loops > 1 else []
    return own + [scan for child in node.get("Plans", []) for scan in _rescans(child)]


def _all_rescans(plans: list[dict[str, Any]]) -> list[str]:
    assert plans, "no plan was captured"
    return [scan for plan in plans for scan in _rescans(plan)]


async def _in_state(conn: asyncpg.Connection, state: str) -> list[str]:
    ids = [f"dlv_p{k:08d}" for k in range(_WRITTEN)]
    await conn.execute("UPDATE deliveries SET state = $2 WHERE id = ANY($1::text[])", ids, state)
    return ids


async def test_the_batch_writers_of_deliveries_join_each_row_once(fresh: str):
    # a batch's values joined to its locked rows a second time came out as a nested loop over the
    # locked rows for every row (the planner takes a batch for 10 rows): 90,000 row visits for 300,
    # in a table large enough for index scans
    account_id = await _seed(fresh)
    conn = await connect(fresh)
    try:
        await _add_deliveries(conn, account_id, 50, 20_000)  # enough for index scans
        await conn.execute("ANALYZE deliveries")
        scans: dict[str, list[str]] = {}

        ids = await _in_state(conn, "queued")
        plans = await _plans(conn, lambda: sending.settle(conn, [(i, "skipped", "opted out") for i in ids]))
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'skipped'") == _WRITTEN
        scans["settle"] = _all_rescans(plans)

        ids = await _in_state(conn, "sending")
        outcomes = [sending.Outcome(i, "sent", f"SM{i}", "queued", Decimal("0.01")) for i in ids]
        plans = await _plans(conn, lambda: sending.record(conn, outcomes))
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sent'") == _WRITTEN
        scans["record"] = _all_rescans(plans)

        rows = {r["id"]: dict(r) for r in await tracking.for_statuses(conn, ids, [])}
        _, changed = fold_sms_statuses(rows, [(i, f"SM{i}", "delivered", None) for i in ids], datetime.now(UTC))
        changes = [(rows[i], {"id": i, **new}) for i, new in changed.items()]
        plans = await _plans(conn, lambda: tracking.set_statuses(conn, changes))
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == _WRITTEN
        scans["set_statuses"] = _all_rescans(plans)
    finally:
        await conn.close()
    assert scans == {"settle": [], "record": [], "set_statuses": []}


def _nodes(node: dict[str, Any]) -> list[str]:
    return [node["Node Type"], *(n for child in node.get("Plans", []) for n in _nodes(child))]


async def test_a_page_deep_into_one_imports_contacts_reads_only_the_page(fresh: str):
    # Given 20,000 contacts written in one transaction (as an import writes them: one created_at)
    conn = await connect(fresh)
    try:
        account_id = await accounts.create_account(conn, "pages", 0)
        await conn.execute(
            "INSERT INTO contacts (id, account_id, phone)"
            " SELECT 'ct_' || lpad(g::text, 8, '0'), $1, '+1415' || lpad(g::text, 7, '0')"
            " FROM generate_series(1, 20000) AS g",
            account_id,
        )
        await conn.execute("ANALYZE contacts")
        created = await conn.fetchval("SELECT created_at FROM contacts WHERE account_id = $1 LIMIT 1", account_id)

        # When a page halfway through them is read, after its cursor
        page: list[asyncpg.Record] = []

        async def read() -> None:
            page.extend(await contacts.list_page(conn, account_id, after=(created, "ct_00010000"), limit=50))

        plans = await _plans(conn, read)
    finally:
        await conn.close()

    # Then it is the 50 contacts before the cursor, read by one index scan: no sort of the 10,000
    # before it
    assert [r["id"] for r in page] == [f"ct_{k:08d}" for k in range(9999, 9949, -1)]
    (plan,) = plans
    assert "Sort" not in _nodes(plan), plan
    assert plan["Plans"][0]["Actual Rows"] == 50, plan
