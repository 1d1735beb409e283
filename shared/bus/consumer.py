"""Consume a queue: decode → handle → ack; failures are retried, then dead-lettered.

A handler must be idempotent: RabbitMQ delivers at least once, and a message redelivered after a
crash reaches the handler again (see `shared.db.processed`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.db.pool import is_transient
from shared.messages.codec import AnyMessage, DecodeError, decode

log = structlog.get_logger()

Handler = Callable[[AnyMessage], Awaitable[None]]

#: Seconds before a failed message is handed back, by how often it failed already.
_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


class Consumer:
    """One queue's consumer; `stop` cancels it and waits for the handlers under way."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queue: str,
        handler: Handler,
        *,
        prefix: str = "",
        prefetch: int = 10,
        backoff: tuple[float, ...] = _BACKOFF,
    ):
        self._connection = connection
        self._queue = prefix + queue
        self._handler = handler
        self._prefetch = prefetch
        self._backoff = backoff
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tag: str | None = None
        self._channel: Any = None
        self._queue_obj: Any = None
        self._stopping = False

    async def start(self) -> None:
        """Start consuming."""
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        # Passive (ensure=True): after a reconnect the robust channel re-declares the queue it
        # holds before consuming again; a queue object made up without declaring (ensure=False)
        # is re-declared as a plain classic queue, which the broker refuses for our quorum queue
        # (PRECONDITION_FAILED), and the consumer is never restored.
        self._queue_obj = await self._channel.get_queue(self._queue, ensure=True)
        self._tag = await self._queue_obj.consume(self._on_message)
        log.info("consumer.started", queue=self._queue, prefetch=self._prefetch)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking messages, let those under way finish (up to `grace` s), close."""
        self._stopping = True
        if self._queue_obj is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue_obj.cancel(self._tag)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._process(incoming)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        try:
            message = decode(incoming.body)
        except DecodeError as exc:
            log.error("message.undecodable", queue=self._queue, error=str(exc)[:500])
            await _settle(incoming.reject(requeue=False))
            return
        ids = {k: getattr(message, k) for k in ("campaign_id", "delivery_id") if hasattr(message, k)}
        with structlog.contextvars.bound_contextvars(message_id=message.message_id, **ids):
            tries = 0
            while True:
                try:
                    await self._handler(message)
                except Exception as exc:
                    if is_transient(exc) and not self._stopping:
                        # The database away for a moment: no bug to trace, and never a reason to
                        # dead-letter the message. It is handled again here until it goes through.
                        log.warning(
                            "message.retry", queue=self._queue, type=message.type, tries=tries + 1, error=repr(exc)
                        )
                        await asyncio.sleep(self._backoff[min(tries, len(self._backoff) - 1)])
                        tries += 1
                        continue
                    # An integer header the broker sets (the headers' type allows any AMQP field value):
                    # the times it was handed back, so this is try count + 1 (of `topology.TRIES`).
                    count = int(cast(int, (incoming.headers or {}).get("x-delivery-count", 0) or 0))
                    log.exception("message.failed", queue=self._queue, type=message.type, tries=count + 1)
                    await asyncio.sleep(self._backoff[min(count, len(self._backoff) - 1)])
                    await _settle(incoming.nack(requeue=True))
                else:
                    await _settle(incoming.ack())
                return


async def _settle(action: Awaitable[None]) -> None:
    """Ack/nack; after a reconnect the old delivery tag is gone and the broker redelivers anyway."""
    try:
        await action
    except Exception as exc:
        log.warning("message.settle_failed", error=repr(exc))
