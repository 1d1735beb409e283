"""A run is planned in chunks (its first contacts at launch, the rest by the planner loop). While it
is, and once a pause or a cancel cuts in, it counts every contact of its campaign: the ones not yet
planned read pending, then cancelled with the rest; `total_contacts` never shrinks to a chunk.

To hold a run mid-planning, the test stalls the scheduler's planner on a run of its own making
(`_stall_planner`): its chunk waits on the counts rows the test keeps locked, so the campaign under
test gets its first chunk from the launch and nothing more until the lock goes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e

_CONTACTS = 3000
_FIRST_CHUNK = 50  # the scheduler's `first_chunk`: planned with the launch


@contextlib.asynccontextmanager
async def _stall_planner(http, system, account, db: asyncpg.Connection) -> AsyncIterator[str]:
    """The planner stuck on a run of a campaign of its own (id yielded) until the block ends."""
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Stall"})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "Stall", "type": "sms", "agent_id": agent["id"], "contacts": [new_phone()],
                               "message_template": "Hi", "scheduled_at": "2030-01-07T09:00:00Z"})
    assert status == 201, body
    stall, run_id = body["id"], f"run_stall{body['id']}"
    # a run being planned, the oldest of all: the planner takes it first; every shard of its counts
    # there already (committed), then locked by this connection: its chunk's count update waits
    await db.execute("UPDATE campaigns SET status = 'scheduled' WHERE id = $1", stall)
    await db.execute("INSERT INTO delivery_counts (run_id, shard, campaign_id)"
                     " SELECT $1, s, $2 FROM generate_series(0, 7) AS s", run_id, stall)
    await db.execute("INSERT INTO runs (id, campaign_id, account_id, seq, status, planned_through, created_at)"
                     " VALUES ($1, $2, $3, 1, 'planning', '', now() - interval '1 day')", run_id, stall, account.id)
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute("SELECT 1 FROM delivery_counts WHERE run_id = $1 FOR UPDATE", run_id)
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
        await wait_until(lambda: db.fetchval(blocked, db.get_server_pid()), timeout=30, message="planner stalled")
        yield stall
    finally:
        await transaction.rollback()
        await call(http, "POST", f"{system.api_url}/campaigns/{stall}/cancel", account.headers)


async def _figures(http, campaign: str, headers: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """(total, pending, cancelled) as every view of the campaign and of its run 1 reads them."""
    _s, whole = await call(http, "GET", campaign, headers)
    _s, results = await call(http, "GET", campaign + "/results", headers)
    _s, run = await call(http, "GET", campaign + "/results?run=1", headers)
    _s, runs = await call(http, "GET", campaign + "/runs", headers)
    listed = runs["data"][0]["results"] if runs["data"] else {}
    return {
        "campaign": (whole["total_contacts"],),
        "results": (results["total_contacts"], results["pending"], results["cancelled"]),
        "run": (run.get("total_contacts"), run.get("pending"), run.get("cancelled")),
        "runs": (listed.get("total_contacts"), listed.get("pending"), listed.get("cancelled")),
    }


async def test_a_run_being_planned_then_paused_and_cancelled_counts_all_its_contacts(http, system, account, db):
    # Given a campaign of 3,000 contacts due next year, launched while the planner is held up
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "Big", "type": "sms", "agent_id": agent["id"], "message_template": "Hi",
                               "contacts": [new_phone() for _ in range(_CONTACTS)],
                               "scheduled_at": "2030-01-10T09:00:00Z"})
    assert status == 201, body
    campaign = f"{system.api_url}/campaigns/{body['id']}"
    async with _stall_planner(http, system, account, db) as stall:
        status, launched = await call(http, "POST", campaign + "/launch", account.headers)
        assert status == 200, launched

        async def first_chunk() -> bool:
            _s, runs = await call(http, "GET", campaign + "/runs", account.headers)
            planned = await db.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", body["id"])
            return bool(runs["data"]) and planned == _FIRST_CHUNK

        await wait_until(first_chunk, timeout=30, message="run 1's first chunk planned")

        # Then run 1 is listed as being planned, and counts every contact, pending
        _s, runs = await call(http, "GET", campaign + "/runs", account.headers)
        assert [r["status"] for r in runs["data"]] == ["planning"], runs
        everyone_pending = (_CONTACTS, _CONTACTS, 0)
        assert await _figures(http, campaign, account.headers) == {
            "campaign": (_CONTACTS,), "results": everyone_pending, "run": everyone_pending, "runs": everyone_pending
        }

        # When it is paused, then cancelled, with most of it not planned yet
        status, paused = await call(http, "POST", campaign + "/pause", account.headers)
        assert (status, paused["status"], paused["total_contacts"]) == (200, "paused", _CONTACTS), paused
        status, cancelled = await call(http, "POST", campaign + "/cancel", account.headers)
        assert (status, cancelled["status"], cancelled["total_contacts"]) == (200, "cancelled", _CONTACTS), cancelled

        async def run_cancelled() -> bool:
            _s, runs = await call(http, "GET", campaign + "/runs", account.headers)
            return runs["data"][0]["status"] == "cancelled"

        await wait_until(run_cancelled, timeout=30, message="run 1 cancelled by the scheduler")

        # Then every contact reads cancelled, wherever the campaign or its run is read
        everyone_cancelled = (_CONTACTS, 0, _CONTACTS)
        expected = {
            "campaign": (_CONTACTS,), "results": everyone_cancelled, "run": everyone_cancelled,
            "runs": everyone_cancelled,
        }
        assert await _figures(http, campaign, account.headers) == expected

    # And still once the planner goes on (nothing more of the cancelled run is planned)
    async def planner_went_on() -> bool:
        return await db.fetchval("SELECT status FROM runs WHERE id = $1", f"run_stall{stall}") != "planning"

    await wait_until(planner_went_on, timeout=30, message="the planner went on")
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", body["id"]) == _FIRST_CHUNK
    assert await _figures(http, campaign, account.headers) == expected
