"""Hold a campaign slot for one send: wait (woken by NOTIFY) until one is free."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from shared.db import slots
from shared.db.listen import Listener


class SlotGate:
    """Waits for free slots; one LISTEN connection per process wakes every waiter of a campaign."""

    def __init__(self, pool: asyncpg.Pool, lease_s: float, poll_s: float = 0.5):
        self._pool = pool
        self._lease = lease_s
        self._poll = poll_s
        self._events: dict[str, asyncio.Event] = {}
        self._listener = Listener(pool, slots.CHANNEL, self._on_free)

    async def __aenter__(self) -> SlotGate:
        """Listen for freed slots while in the block."""
        await self._listener.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._listener.stop()

    def _on_free(self, campaign_id: str | None) -> None:
        if campaign_id is None:  # the LISTEN connection was lost: a slot may have been freed meanwhile
            for waiting in self._events.values():
                waiting.set()
        elif (event := self._events.get(campaign_id)) is not None:
            event.set()

    @contextlib.asynccontextmanager
    async def hold(
        self,
        campaign_id: str,
        delivery_id: str,
        still_wanted: Callable[[], Awaitable[bool]],
        keep: bool = False,
        lease_s: float | None = None,
    ) -> AsyncIterator[Slot]:
        """Yield a Slot once one is leased (`held` False if `still_wanted` said no first). It is
        freed on exit unless `slot.keep` was set (a call under way: the tracker frees it when the
        call ends, or the lease runs out)."""
        event = self._events.setdefault(campaign_id, asyncio.Event())
        while True:
            event.clear()
            if await slots.try_acquire(self._pool, campaign_id, delivery_id, lease_s or self._lease):
                break
            if not await still_wanted():
                yield Slot(held=False)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self._poll)
        slot = Slot(held=True, keep=False)
        try:
            yield slot
        finally:
            if not (keep and slot.keep) and not slot.freed:
                await slots.release(self._pool, campaign_id, delivery_id)


@dataclass
class Slot:
    """A leased concurrency slot; `keep` leaves it held after the block; `freed` says the block
    freed it already (with the send's record, in the same transaction)."""

    held: bool
    keep: bool = False
    freed: bool = False
