"""Transactional outbox: `add` inside the caller's transaction; `Relay` publishes with confirms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractRobustConnection

from shared.bus.topology import ROUTES
from shared.db.connection import Connection
from shared.db.listen import Listener
from shared.messages.codec import encode
from shared.messages.envelope import Message

log = structlog.get_logger()

_INSERT = """
INSERT INTO outbox (message_id, exchange, routing_key, body, mandatory)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::boolean[])
"""
_CLAIM = """
SELECT id, message_id, exchange, routing_key, body, mandatory FROM outbox
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
#: Channel the relays LISTEN on; `add` notifies it (delivered at commit).
CHANNEL = "outbox"


async def add(conn: Connection, messages: Sequence[Message]) -> None:
    """Write messages to the outbox in the caller's transaction (published once it commits)."""
    if not messages:
        return
    routes = [ROUTES[m.type] for m in messages]  # type: ignore[attr-defined]
    await conn.execute(
        _INSERT,
        [m.message_id for m in messages],
        [r.exchange for r in routes],
        [m.routing_key for m in messages],
        [encode(m) for m in messages],
        [r.mandatory for r in routes],
    )
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


class Relay:
    """Publishes outbox rows to RabbitMQ and deletes each only after the broker confirms it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connection: AbstractRobustConnection,
        prefix: str = "",
        batch: int = 500,
        poll_interval: float = 1.0,
    ):
        self._pool = pool
        self._connection = connection
        self._prefix = prefix
        self._batch = batch
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def run(self) -> None:
        """Relay until cancelled: woken by NOTIFY, and polling as a fallback."""
        try:
            async with Listener(self._pool, CHANNEL, self._on_notify):
                while True:
                    if await self._round() < self._batch:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self._poll)
        finally:
            if self._channel is not None:
                with contextlib.suppress(Exception):
                    await self._channel.close()

    async def _round(self) -> int:
        """One batch relayed; how many rows it moved. A failing round (the database or the broker
        away) is logged and moves nothing: nothing ends the loop."""
        try:
            if self._channel is None:  # robust: it reopens itself after the broker comes back
                self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            return await self._relay_batch(self._channel)
        except Exception as exc:
            log.warning("outbox.relay_failed", error=repr(exc))
            await asyncio.sleep(self._poll)
            return 0

    def _on_notify(self, _payload: str | None) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Relay now: this process has just committed rows (no need to wait for their NOTIFY)."""
        self._wake.set()

    async def _relay_batch(self, channel: aio_pika.abc.AbstractChannel) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch)
            if not rows:
                return 0
            exchanges = {
                name: await channel.get_exchange(self._prefix + name, ensure=False)
                for name in {r["exchange"] for r in rows}
            }
            results = await asyncio.gather(
                *(
                    exchanges[r["exchange"]].publish(
                        aio_pika.Message(
                            r["body"],
                            message_id=r["message_id"],
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            type=r["routing_key"],
                        ),
                        routing_key=r["routing_key"],
                        mandatory=r["mandatory"],
                    )
                    for r in rows
                ),
                return_exceptions=True,
            )
            confirmed = [r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            failed = len(rows) - len(confirmed)
            if failed:
                first = next(res for res in results if isinstance(res, BaseException))
                log.warning("outbox.publish_failed", count=failed, error=repr(first))
            await conn.execute(_DELETE, confirmed)
            return len(confirmed)
