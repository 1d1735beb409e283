"""Deliveries left `sending` (a dispatcher died mid-call, or the provider did not answer in time):
ask the provider whether it has the message (or call) before anything is sent again. A provider
that cannot be asked (SMTP) gets the message again: the email carries the same Message-ID.

The lookups run outside any transaction; what they find is recorded with the dispatchers' own
state-guarded batch write, so two reconcilers (or a late dispatcher) never apply an outcome twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import structlog

from shared.db import sending
from shared.db.sending import Outcome
from shared.domain.retry import next_attempt
from shared.providers.base import Found, ProviderError
from shared.runtime import every

log = structlog.get_logger()

#: Looks a stuck delivery up at the provider.
Find = Callable[[asyncpg.Record], Awaitable[Found | None]]
#: What a send found at the provider costs (None: charged later, e.g. a call when it ends).
Cost = Callable[[asyncpg.Record], Decimal | None]


class Reconciler:
    """Resolves one channel's stuck deliveries: found at the provider → sent; not found (or no
    `find`: the provider cannot be asked) → sent again now (the attempt already counted), or failed
    once retries are exhausted."""

    def __init__(
        self, pool: asyncpg.Pool, channel: str, find: Find | None, cost: Cost, after_s: float, interval_s: float
    ):
        self._pool = pool
        self._channel = channel
        self._find = find
        self._cost = cost
        self._after = after_s
        self._interval = interval_s
        # What a delivery's error then says.
        self._unknown = "provider outcome unknown" if find else f"{channel} outcome unknown"
        self._again = "not found at the provider; sent again" if find else f"{channel} outcome unknown; sent again"

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval_s` until `stop` is set."""
        await every(self._interval, stop, self.reconcile_once, f"reconcile.{self._channel}")

    async def reconcile_once(self) -> int:
        """One round; how many deliveries it looked at."""
        rows = await sending.stuck(self._pool, self._channel, self._after)
        outcomes = [o for o in [await self._resolve(row) for row in rows] if o is not None]
        if outcomes:
            async with self._pool.acquire() as conn, conn.transaction():
                await sending.record(conn, outcomes)
        return len(rows)

    async def _resolve(self, row: asyncpg.Record) -> Outcome | None:
        try:
            found = await self._find(row) if self._find else None
        except ProviderError as exc:
            log.warning("reconcile.lookup_failed", delivery_id=row["id"], error=str(exc))
            return None
        if found is not None:
            log.info("reconcile.found", delivery_id=row["id"], provider_id=found.provider_id)
            return Outcome(row["id"], "sent", found.provider_id, found.status, self._cost(row))
        now = datetime.now(UTC)
        step = next_attempt(row["attempts"], row["max_retries"], row["retry_interval"], now, "retry")
        log.info("reconcile.not_found", delivery_id=row["id"], asked=self._find is not None, retry=step.at is not None)
        if step.at is None:
            return Outcome(row["id"], "failed", error=f"{self._unknown} and retries exhausted")
        return Outcome(row["id"], "retry", retry_at=now, error=self._again)
