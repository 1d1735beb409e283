"""The outbox relay and the consumer, on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from structlog.testing import capture_logs

from shared.bus import outbox, topology
from shared.bus.consumer import Consumer
from shared.bus.dlq import dead_letter
from shared.db.migrate import drop_database, migrate
from shared.db.pool import create_pool
from shared.db.processed import first_time
from shared.messages.campaign_events import CampaignCancelled, CampaignCreated
from shared.messages.codec import decode, encode
from shared.messages.dispatch import SendSms
from tests.support import wait_until


@pytest.fixture
async def bus(infra):
    """A topology under a prefix of this test's own, removed afterwards."""
    prefix = f"{infra.prefix}{uuid.uuid4().hex[:6]}."
    connection = await aio_pika.connect_robust(infra.amqp_url)
    async with connection.channel() as channel:
        await topology.declare(channel, prefix)
    yield connection, prefix
    async with connection.channel() as channel:
        await topology.delete(channel, prefix)
    await connection.close()


@pytest.fixture(scope="module")
def bus_database(infra):
    """A database of this module's own: the running services' outbox relays must not see its rows."""
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=urlsplit(infra.database_url).path + "_bus"))
    asyncio.run(migrate(url))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
async def pool(bus_database):
    async with create_pool(bus_database) as pool:
        yield pool


def test_messages_round_trip_with_type_and_version():
    message = SendSms(account_id="acct_1", campaign_id="camp_1", delivery_ids=["dlv_1", "dlv_2"])
    assert message.routing_key == "send.sms.v2"
    decoded = decode(encode(message))
    assert decoded == message


def test_a_version_1_send_command_reads_as_a_batch_of_one():
    body = (
        b'{"type": "send.sms", "version": 1, "message_id": "m1", "occurred_at": "2026-01-01T00:00:00Z",'
        b' "account_id": "acct_1", "campaign_id": "camp_1", "delivery_id": "dlv_1"}'
    )
    decoded = decode(body)
    assert isinstance(decoded, SendSms)
    assert (decoded.version, decoded.delivery_ids) == (1, ["dlv_1"])
    assert decoded.routing_key == "send.sms.v1"


async def test_relay_publishes_committed_rows_only_and_deletes_them(bus, pool):
    connection, prefix = bus
    commands = [SendSms(account_id="acct_x", campaign_id="camp_x", delivery_ids=[f"dlv_{i}"]) for i in range(25)]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await outbox.add(conn, commands)
        # a rolled-back transaction leaves nothing to publish
        tx = conn.transaction()
        await tx.start()
        await outbox.add(conn, [SendSms(account_id="acct_x", campaign_id="camp_x", delivery_ids=["dlv_rolled_back"])])
        await tx.rollback()
    relay = asyncio.create_task(outbox.Relay(pool, connection, prefix, poll_interval=0.1).run())
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(prefix + "dispatch.sms", ensure=False)
        received: list[str] = []

        async def drained() -> bool:
            while (message := await queue.get(fail=False)) is not None:
                received.append(decode(message.body).delivery_ids[0])  # type: ignore[union-attr]
                await message.ack()
            return len(received) >= 25

        await wait_until(drained, timeout=20)
        ids = {c.message_id for c in commands}
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = ANY($1::text[])", list(ids)) == 0
        assert sorted(received) == sorted(c.delivery_ids[0] for c in commands)
        assert "dlv_rolled_back" not in received
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)


async def test_an_unroutable_mandatory_message_stays_in_the_outbox(bus, pool):
    connection, prefix = bus
    async with connection.channel() as channel:  # remove the queue the command routes to
        await channel.queue_delete(prefix + "scheduler.campaign.cancelled")
    message = CampaignCancelled(account_id="acct_x", campaign_id="camp_unroutable")
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, [message])
    relay = outbox.Relay(pool, connection, prefix)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await relay._relay_batch(channel)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", message.message_id) == 1
    await pool.execute("DELETE FROM outbox WHERE message_id = $1", message.message_id)


async def test_consumer_acks_after_the_handler_and_dead_letters_poison(bus):
    connection, prefix = bus
    handled: list[str] = []
    poisoned = 0

    async def handler(message):
        nonlocal poisoned
        if message.campaign_id == "camp_poison":
            poisoned += 1
            raise RuntimeError("always fails")
        handled.append(message.campaign_id)

    consumer = Consumer(connection, "scheduler.campaign.cancelled", handler, prefix=prefix, prefetch=5, backoff=(0.01,))
    with capture_logs() as logs:
        await consumer.start()
        channel = await connection.channel()
        exchange = await channel.get_exchange(prefix + "campaign.events", ensure=False)
        for campaign_id in ("camp_ok", "camp_poison"):
            body = encode(CampaignCancelled(account_id="a", campaign_id=campaign_id))
            await exchange.publish(aio_pika.Message(body), routing_key="campaign.cancelled.v1")
        await exchange.publish(aio_pika.Message(b"not json"), routing_key="campaign.cancelled.v1")
        dlq = await channel.get_queue(prefix + "scheduler.campaign.cancelled.dlq", ensure=False)
        dead: list[bytes] = []
        reasons: list[str] = []

        async def dead_lettered() -> bool:
            while (message := await dlq.get(fail=False)) is not None:
                dead.append(message.body)
                reasons.append(dead_letter(message).reason)
                await message.ack()
            return len(dead) >= 2

        await wait_until(dead_lettered, timeout=60, message="poison and undecodable messages dead-lettered")
        await consumer.stop()
    assert handled == ["camp_ok"]
    assert b"not json" in dead
    assert any(b"camp_poison" in body for body in dead)
    # handled once and redelivered up to the delivery limit: the consumer's last "tries" and the
    # dead letter's reason give the same count
    assert poisoned == topology.DELIVERY_LIMIT + 1 == topology.TRIES
    failures = [e["tries"] for e in logs if e["event"] == "message.failed"]  # (only the poison one fails)
    assert failures == list(range(1, poisoned + 1))
    assert f"failed {poisoned} times (the delivery limit)" in reasons, reasons


async def test_first_time_dedupes_per_consumer(pool):
    async with pool.acquire() as conn:
        assert await first_time(conn, "c1", "m1")
        assert not await first_time(conn, "c1", "m1")
        assert await first_time(conn, "c2", "m1")
    assert CampaignCreated(account_id="a", campaign_id="c", channel="sms").routing_key == "campaign.created.v1"
