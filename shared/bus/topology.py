"""Exchanges and queues, declared from one table, idempotently, by every service at start-up.

Naming: one topic exchange per aggregate (`campaign.events`, `delivery.events`), one direct
exchange `dispatch` for commands; queues are `<consumer>.<event>` and `dispatch.<channel>`.
Every queue is a quorum queue with a delivery limit and a dead-letter queue `<queue>.dlq`.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

#: The queues' x-delivery-limit: times a failed message is handed back. The broker dead-letters
#: it when it is returned once more than this, so it is handled `TRIES` times in all.
DELIVERY_LIMIT = 10
#: Times a message that always fails is handled before it goes to the dead-letter queue (the
#: first delivery and `DELIVERY_LIMIT` redeliveries): the consumer's last `tries`, the DLQ's count.
TRIES = DELIVERY_LIMIT + 1
DLX = "dlx"


@dataclass(frozen=True)
class Route:
    """Where a message type is published, and whether an unroutable publish is an error."""

    exchange: str
    mandatory: bool


#: Exchange of each message type. Types with a consumer below are published as mandatory.
ROUTES: dict[str, Route] = {
    "campaign.created": Route("campaign.events", False),
    "campaign.launched": Route("campaign.events", True),
    "campaign.paused": Route("campaign.events", False),
    "campaign.resumed": Route("campaign.events", False),
    "campaign.cancelled": Route("campaign.events", True),
    "run.completed": Route("campaign.events", False),
    "send.sms": Route("dispatch", True),
    "send.email": Route("dispatch", True),
    "send.voice": Route("dispatch", True),
    "delivery.state_changed": Route("delivery.events", False),
}

EXCHANGES: dict[str, aio_pika.ExchangeType] = {
    "campaign.events": aio_pika.ExchangeType.TOPIC,
    "delivery.events": aio_pika.ExchangeType.TOPIC,
    "dispatch": aio_pika.ExchangeType.DIRECT,
}

#: queue name -> (exchange, routing keys bound); a command queue takes every version still read.
QUEUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "scheduler.campaign.launched": ("campaign.events", ("campaign.launched.v1",)),
    "scheduler.campaign.cancelled": ("campaign.events", ("campaign.cancelled.v1",)),
    "dispatch.sms": ("dispatch", ("send.sms.v1", "send.sms.v2")),
    "dispatch.email": ("dispatch", ("send.email.v1", "send.email.v2")),
    "dispatch.voice": ("dispatch", ("send.voice.v1", "send.voice.v2")),
}


async def declare(channel: AbstractChannel, prefix: str = "") -> None:
    """Declare every exchange, queue, dead-letter queue and binding (idempotent)."""
    dlx = await channel.declare_exchange(prefix + DLX, aio_pika.ExchangeType.DIRECT, durable=True)
    exchanges = {
        name: await channel.declare_exchange(prefix + name, kind, durable=True) for name, kind in EXCHANGES.items()
    }
    for name, (exchange, keys) in QUEUES.items():
        full = prefix + name
        dlq = await channel.declare_queue(full + ".dlq", durable=True, arguments={"x-queue-type": "quorum"})
        await dlq.bind(dlx, routing_key=full)
        queue = await channel.declare_queue(
            full,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": prefix + DLX,
                "x-dead-letter-routing-key": full,
            },
        )
        for key in keys:
            await queue.bind(exchanges[exchange], routing_key=key)


async def delete(channel: AbstractChannel, prefix: str) -> None:
    """Remove everything `declare` made under `prefix` (for tests)."""
    for name in QUEUES:
        await channel.queue_delete(prefix + name)
        await channel.queue_delete(prefix + name + ".dlq")
    for name in [*EXCHANGES, DLX]:
        await channel.exchange_delete(prefix + name)
