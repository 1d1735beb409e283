"""Group commit: items submitted while a batch is being written go into the next batch, so a busy
writer writes many items per transaction and an idle one writes each at once. `submit` returns once
its item is durably written (or raises what writing it raised), or as soon as the writer knows that
the item has nothing of its own to write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from prometheus_client import Histogram

from shared.db.pool import is_transient

log = structlog.get_logger()

T = TypeVar("T")
R = TypeVar("R")

BATCH = Histogram(
    "campaigns_group_commit_batch_size",
    "Items written per transaction by a group commit",
    ["writer"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)

#: Seconds between tries of a batch that met a passing failure (the database away), growing.
_BACKOFF = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class _Item(Generic[T, R]):
    value: T
    done: asyncio.Future[R]


#: What answers item k of a batch before the batch is committed (see GroupCommit).
Answer = Callable[[int, R], None]


class GroupCommit(Generic[T, R]):
    """Writes submitted items with `write(batch, answer) -> one result per item`, up to `max_batch`
    at a time and up to `parallel` batches at once. `write` may call `answer(k, result)` for an item
    whose result it knows before committing and which the commit cannot change (an item that
    writes nothing), so that its caller need not wait for the rest of the batch. A batch that meets
    a passing failure is tried again (for `retry_for_s` seconds, or for ever when None); one that
    fails otherwise is split, so that one bad item fails alone."""

    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T], Answer[R]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        parallel: int = 2,
        linger_s: float = 0.0,
        retry_for_s: float | None = None,
    ):
        self._name = name
        self._write = write
        self._max = max_batch
        self._parallel = parallel
        #: Seconds a batch waits for company before it is written (its owner may change it).
        self.linger_s = linger_s
        self._retry_for = retry_for_s
        self._pending: list[_Item[T, R]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, value: T) -> R:
        """Write `value` in a batch; its result once the batch committed."""
        item: _Item[T, R] = _Item(value, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if len(self._writers) < self._parallel:
            task = asyncio.create_task(self._drain(), name=f"group_commit.{self._name}")
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        # (a cancelled caller cancels only its own future: its item is written with the batch all the same)
        return await item.done

    async def _drain(self) -> None:
        while self._pending:
            if self.linger_s and len(self._pending) < self._max:
                await asyncio.sleep(self.linger_s)  # a moment for company: a statement costs as much as dozens of rows
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Item[T, R]]) -> None:
        deadline = None if self._retry_for is None else time.monotonic() + self._retry_for
        tries = 0

        def answer(k: int, result: R) -> None:
            if not batch[k].done.done():
                batch[k].done.set_result(result)

        while True:
            try:
                results = await self._write([item.value for item in batch], answer)
            except Exception as exc:
                if is_transient(exc) and (deadline is None or time.monotonic() < deadline):
                    log.warning(f"{self._name}.retry", count=len(batch), tries=tries + 1, error=repr(exc))
                    await asyncio.sleep(_BACKOFF[min(tries, len(_BACKOFF) - 1)])
                    tries += 1
                    continue
                if len(batch) > 1 and not is_transient(exc):
                    for item in batch:
                        await self._commit([item])
                    return
                if not is_transient(exc):
                    log.exception(f"{self._name}.failed")
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                return
            BATCH.labels(self._name).observe(len(batch))
            for item, result in zip(batch, results, strict=True):
                if not item.done.done():
                    item.done.set_result(result)
            return
