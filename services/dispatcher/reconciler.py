"""Deliveries left `sending` (a dispatcher died mid-call, or the provider did not answer in time):
ask the provider whether it has the message before anything is sent again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from services.dispatcher.providers.base import SmsLookup
from shared.db import sending
from shared.domain.pricing import sms_segments
from shared.domain.retry import next_attempt
from shared.runtime import every

log = structlog.get_logger()


class Reconciler:
    """Resolves stuck deliveries: found at the provider → sent; not found → retried (or failed)."""

    def __init__(self, pool: asyncpg.Pool, lookup: SmsLookup, default_from: str, after_s: float, interval_s: float):
        self._pool = pool
        self._lookup = lookup
        self._default_from = default_from
        self._after = after_s
        self._interval = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval_s` until `stop` is set."""
        await every(self._interval, stop, self.reconcile_once, "reconcile.sms")

    async def reconcile_once(self) -> int:
        """One round; how many deliveries it resolved."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await sending.stuck(conn, "sms", self._after)
            for row in rows:
                await self._resolve(conn, row)
        return len(rows)

    async def _resolve(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        found = await self._lookup.find_sms(
            to=row["to_address"], from_=row["from_number"] or self._default_from, body=row["rendered"] or ""
        )
        if found is not None:
            cost = row["price_sms"] * sms_segments(row["rendered"] or "")
            await sending.mark_sent(conn, row["id"], found.provider_id, found.status, cost)
            log.info("reconcile.found", delivery_id=row["id"], provider_id=found.provider_id)
            return
        step = next_attempt(row["attempts"], row["max_retries"], row["retry_interval"], datetime.now(UTC), "retry")
        if step.at is None:
            await sending.finish(conn, row["id"], "failed", "provider outcome unknown and retries exhausted")
        else:
            # Not at the provider: it never left. Send again now (the attempt already counted).
            await sending.schedule_retry(conn, row["id"], datetime.now(UTC), "not found at the provider; resent")
        log.info("reconcile.not_found", delivery_id=row["id"], retry=step.at is not None)
