"""Dead-letter queues as an operator's tool: count them, read their messages, send messages back
to their queue, or drop them, with nothing but AMQP (basic.get; no management plugin).

Each queue of `topology.QUEUES` has `<prefix><queue>.dlq`. Messages are taken with basic.get and
held unacknowledged while we look: those not acted on go back to the dead-letter queue when the
channel closes. A replayed message is published (with confirms) straight to its queue through the
default exchange, and only then removed from the dead-letter queue: never lost, at worst twice,
which the consumers' idempotence absorbs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from shared.bus import topology

#: Why the broker dead-lettered a message (the `x-death` reason), in words.
REASONS = {
    "rejected": "rejected by its consumer (undecodable, or refused as bad)",
    "delivery_limit": f"failed {topology.TRIES} times (the delivery limit)",
    "expired": "expired",
    "maxlen": "dropped from a full queue",
}


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message, as an operator reads it."""

    id: str
    type: str
    reason: str
    died_at: datetime | None
    #: The queue it died in (the full name, prefix included): where a replay sends it.
    queue: str
    headers: dict[str, Any]
    body: bytes


def dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    """What `message` (taken from a dead-letter queue) is, why it died and when."""
    deaths: Any = (message.headers or {}).get("x-death")
    death: dict[str, Any] = dict(deaths[0]) if isinstance(deaths, list) and deaths else {}  # the latest first
    reason = _text(death.get("reason")) or "unknown"
    times = int(death.get("count") or 1)
    return DeadLetter(
        id=message.message_id or "sha256:" + hashlib.sha256(message.body).hexdigest()[:16],
        type=message.type or _body_type(message.body),
        reason=REASONS.get(reason, reason) + (f" ({times} times)" if times > 1 else ""),
        died_at=death.get("time") if isinstance(death.get("time"), datetime) else None,
        queue=_text(death.get("queue")) or "",
        headers=dict(message.headers or {}),
        body=message.body,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _body_type(body: bytes) -> str:
    try:
        found = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "undecodable"
    return str(found) if found else "untyped"


def dlq_name(prefix: str, queue: str) -> str:
    """The dead-letter queue of `queue` (one of topology.QUEUES)."""
    if queue not in topology.QUEUES:
        raise ValueError(f"unknown queue {queue!r}: one of {', '.join(sorted(topology.QUEUES))}")
    return f"{prefix}{queue}.dlq"


@asynccontextmanager
async def channel(url: str) -> AsyncIterator[AbstractChannel]:
    """A confirming channel on a connection of its own (closed, with what it holds, on exit)."""
    connection: AbstractConnection = await aio_pika.connect(url, client_properties={"connection_name": "dlq"})
    async with connection, connection.channel(publisher_confirms=True) as opened:
        yield opened


async def counts(ch: AbstractChannel, prefix: str) -> dict[str, int]:
    """Messages waiting in each dead-letter queue, by queue (without prefix)."""
    found = {}
    for queue in sorted(topology.QUEUES):
        declared = await ch.declare_queue(dlq_name(prefix, queue), passive=True)
        found[queue] = declared.declaration_result.message_count or 0
    return found


async def take(ch: AbstractChannel, prefix: str, queue: str) -> AsyncIterator[AbstractIncomingMessage]:
    """The messages in `queue`'s dead-letter queue now, taken one by one and held unacknowledged
    (no more than were there: one replayed that dies again while we go is not taken twice)."""
    dlq = await ch.declare_queue(dlq_name(prefix, queue), passive=True)
    for _ in range(dlq.declaration_result.message_count or 0):
        message = await dlq.get(no_ack=False, fail=False)
        if message is None:
            return
        yield message


async def replay(ch: AbstractChannel, prefix: str, queue: str, ids: Iterable[str] = ()) -> list[DeadLetter]:
    """Send the dead letters of `queue` (those of `ids`, or all) back to their queue; those sent."""
    wanted = set(ids)

    async def resend(message: AbstractIncomingMessage, _letter: DeadLetter) -> None:
        await ch.default_exchange.publish(
            aio_pika.Message(
                message.body,
                # x-death kept: a message that dies again shows how often it did
                headers={k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"},
                message_id=message.message_id,
                content_type=message.content_type,
                type=message.type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=prefix + queue,
            mandatory=True,
        )
        await message.ack()

    return await _each(ch, prefix, queue, wanted, resend)


async def purge(ch: AbstractChannel, prefix: str, queue: str, ids: Iterable[str] = ()) -> list[DeadLetter]:
    """Drop the dead letters of `queue` (those of `ids`, or all); those dropped."""

    async def drop(message: AbstractIncomingMessage, _letter: DeadLetter) -> None:
        await message.ack()

    return await _each(ch, prefix, queue, set(ids), drop)


async def _each(
    ch: AbstractChannel,
    prefix: str,
    queue: str,
    wanted: set[str],
    act: Callable[[AbstractIncomingMessage, DeadLetter], Any],
) -> list[DeadLetter]:
    done = []
    async for message in take(ch, prefix, queue):
        letter = dead_letter(message)
        if not wanted or letter.id in wanted:
            await act(message, letter)
            done.append(letter)
            if wanted and len(done) == len(wanted):
                break
    return done  # the others go back when the channel closes
