"""SMS status callbacks, group-committed: the callbacks that arrive while one batch commits go into
the next, one transaction for all of them (lock the deliveries in id order, apply each callback in
the order it came by the never-backwards rule, write the changed rows in one statement). Each
callback is answered only once its batch has committed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Histogram

from shared.db import tracking
from shared.db.pool import is_transient
from shared.domain.deliveries import fold_sms_statuses

log = structlog.get_logger()

BATCH = Histogram(
    "campaigns_status_batch_size",
    "Status callbacks committed per transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

#: Seconds a batch that met a passing failure (the database away) is tried again before its
#: callbacks are answered 503 (Twilio gives up on a callback after 15 s).
RETRY_FOR_S = 5.0


@dataclass(frozen=True)
class StatusCallback:
    """One callback: our delivery id (from the callback URL), Twilio's sid, the status, its error."""

    delivery_id: str | None
    sid: str | None
    status: str
    error_code: str | None


@dataclass
class _Item:
    callback: StatusCallback
    done: asyncio.Future[str]


class StatusBatcher:
    """Applies status callbacks in batches of up to `max_batch`."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 500, linger_s: float = 0.005):
        self._pool = pool
        self._max = max_batch
        self._linger = linger_s
        self._pending: list[_Item] = []
        self._flusher: asyncio.Task[None] | None = None

    async def apply(self, callback: StatusCallback) -> str:
        """Apply one callback; once committed, what it did: `applied`, `stale` (it changed
        nothing: a repeat, or a status older than the one recorded) or `unknown_delivery`."""
        item = _Item(callback, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="statuses")
        return await asyncio.shield(item.done)

    async def _flush(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < self._max:
                    await asyncio.sleep(self._linger)  # more callbacks to share the commit with
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                await self._commit(batch)
        finally:
            self._flusher = None

    async def _commit(self, batch: list[_Item]) -> None:
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                results = await self._write([item.callback for item in batch])
            except Exception as exc:
                if is_transient(exc) and time.monotonic() < deadline:
                    log.warning("statuses.retry", count=len(batch), error=repr(exc))
                    await asyncio.sleep(0.2)
                    continue
                if len(batch) > 1 and not is_transient(exc):  # one bad callback must not fail the others
                    for item in batch:
                        await self._commit([item])
                    return
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                return
            BATCH.observe(len(batch))
            for item, result in zip(batch, results, strict=True):
                if not item.done.done():
                    item.done.set_result(result)
            return

    async def _write(self, callbacks: list[StatusCallback]) -> list[str]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await tracking.for_statuses(
                conn,
                [c.delivery_id for c in callbacks if c.delivery_id],
                [c.sid for c in callbacks if c.sid and not c.delivery_id],
            )
            current = {r["id"]: dict(r) for r in rows}
            by_sid = {r["provider_id"]: r["id"] for r in rows if r["provider_id"]}
            keyed = [(c.delivery_id or by_sid.get(c.sid or "") or "", c.sid, c.status, c.error_code) for c in callbacks]
            results, changed = fold_sms_statuses(current, keyed, datetime.now(UTC))
            await tracking.set_statuses(conn, [{"id": k, **v} for k, v in changed.items()])
        return results
