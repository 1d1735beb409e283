"""The tracker's status batches at the real PostgreSQL: a callback that changes nothing (Twilio's
`sent` for a send already recorded, a repeat) is answered as soon as the batch has read it, without
waiting for the batch's write; one that changes its delivery is answered once that is committed."""

from __future__ import annotations

import asyncio

import pytest

from services.tracker.statuses import StatusBatcher, StatusCallback
from shared.db.pool import connect, create_pool
from shared.ids import new_id
from tests.conftest import Infra, make_account, own_database
from tests.integration.test_lanes import _campaign, _delivery


@pytest.fixture(scope="module")
def statuses_database(infra: Infra):
    """A database of its own: no service of the running system looks at these deliveries."""
    with own_database(infra, "statuses") as url:
        yield url


async def test_a_callback_that_changes_nothing_is_answered_while_its_batch_waits_to_write(statuses_database):
    db = await connect(statuses_database)
    holder = await connect(statuses_database)
    try:
        account = await make_account(db)
        agent_id = new_id("agent")
        await db.execute("INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'Riley')", agent_id, account.id)
        campaign_id, run_id = await _campaign(db, account.id, agent_id, "running")
        moving, _ = await _delivery(db, account.id, campaign_id, run_id, state="sent")
        recorded, _ = await _delivery(db, account.id, campaign_id, run_id, state="sent")
        await db.execute(
            "UPDATE deliveries SET provider_id = 'SM' || id, provider_status = 'queued', sent_at = now()"
            " WHERE id = ANY($1::text[])",
            [moving, recorded],
        )
        async with create_pool(statuses_database, 1, 2) as pool:
            batcher = StatusBatcher(pool)
            # Given the row of the delivery that will change held by another transaction (the
            # batch's write waits for it)
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE", moving)
            try:
                # When `delivered` for it and `sent` for the other (recorded as sent already) come together
                delivered = asyncio.create_task(batcher.apply(StatusCallback(moving, f"SM{moving}", "delivered", None)))
                sent = asyncio.create_task(batcher.apply(StatusCallback(recorded, f"SM{recorded}", "sent", None)))
                # Then `sent`, which changes nothing, is answered while the batch waits to write
                assert await asyncio.wait_for(sent, 10) == "stale"
                assert not delivered.done()
                assert await db.fetchval("SELECT state FROM deliveries WHERE id = $1", moving) == "sent"
            finally:
                await lock.rollback()
            # and `delivered` once its write is committed
            assert await asyncio.wait_for(delivered, 10) == "applied"
            assert await db.fetchval("SELECT state FROM deliveries WHERE id = $1", moving) == "delivered"
    finally:
        await holder.close()
        await db.close()
