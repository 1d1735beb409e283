"""Send outcomes, group-committed: every outcome that arrives while one batch commits goes into the
next, so a busy dispatcher records hundreds of sends per commit and an idle one one at a time
without waiting. `record` returns once its outcome is durable."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import structlog
from prometheus_client import Histogram

from shared.db import sending
from shared.db.pool import is_transient
from shared.db.sending import Outcome

log = structlog.get_logger()

BATCH = Histogram(
    "campaigns_record_batch_size",
    "Send outcomes recorded per commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)

#: Seconds between tries of a batch that met a passing failure (the database away), growing.
_BACKOFF = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class _Item:
    outcome: Outcome
    #: The contact to opt out of the channel (the provider said it unsubscribed), if any.
    opt_out: str | None
    done: asyncio.Future[None]


class Recorder:
    """Commits outcomes in batches of up to `max_batch`: one statement for the deliveries and their
    charges (and one for opt-outs, when the provider reported any)."""

    def __init__(self, pool: asyncpg.Pool, channel: str, max_batch: int = 1000, linger_s: float = 0.005):
        self._pool = pool
        self._channel = channel
        self._max = max_batch
        self._linger = linger_s
        self._pending: list[_Item] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, outcome: Outcome, opt_out: str | None = None) -> None:
        """Record `outcome` (and the opt-out); returns once committed."""
        item = _Item(outcome, opt_out, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"record.{self._channel}")
        await asyncio.shield(item.done)

    async def _flush(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < self._max:
                    # a few milliseconds for more outcomes to come: a statement costs the database
                    # about as much as a few dozen rows, so bigger batches are much cheaper per send
                    await asyncio.sleep(self._linger)
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                await self._commit(batch)
        finally:
            self._flusher = None

    async def _commit(self, batch: list[_Item]) -> None:
        """Commit one batch; a passing failure is tried again (the outcomes wait in memory: a
        process that dies meanwhile leaves its deliveries `sending`, for the reconciler), any other
        fails each outcome of the batch on its own, so that one bad row cannot hold the others."""
        tries = 0
        while True:
            try:
                await self._write(batch)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("record.retry", count=len(batch), tries=tries + 1, error=repr(exc))
                    await asyncio.sleep(_BACKOFF[min(tries, len(_BACKOFF) - 1)])
                    tries += 1
                    continue
                if len(batch) > 1:
                    for item in batch:
                        await self._commit([item])
                    return
                log.exception("record.failed", delivery_id=batch[0].outcome.delivery_id)
                _settle(batch, exc)
                return
            BATCH.observe(len(batch))
            _settle(batch, None)
            return

    async def _write(self, batch: list[_Item]) -> None:
        outcomes = [item.outcome for item in batch]
        opt_outs = [item.opt_out for item in batch if item.opt_out]
        if not opt_outs:  # one statement: no transaction to open
            await sending.record(self._pool, outcomes)
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await sending.record(conn, outcomes)
            await sending.opt_out(conn, opt_outs, self._channel)


def _settle(batch: list[_Item], exc: BaseException | None) -> None:
    for item in batch:
        if item.done.done():
            continue
        if exc is None:
            item.done.set_result(None)
        else:
            item.done.set_exception(exc)
