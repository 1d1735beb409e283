"""Receipts that never came: a delivery accepted by the provider whose final status callback was
lost (the tracker down for longer than Twilio retries, a network cut) is looked up at the provider,
and the status it reports is applied exactly as the callback would have been (never backwards)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Counter

from services.dispatcher.providers.base import ProviderError
from shared.db import receipts
from shared.domain.deliveries import sms_status_change
from shared.runtime import every

log = structlog.get_logger()

RECEIPTS = Counter(
    "campaigns_receipt_checks_total", "Overdue receipts looked up at the provider", ["channel", "result"]
)

#: A message's status at the provider: (status, error code), or None when it does not know it.
FetchStatus = Callable[[str], Awaitable[tuple[str, str | None] | None]]


class ReceiptPoller:
    """Asks the provider for the status of one channel's overdue receipts (see shared/db/receipts.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        fetch: FetchStatus,
        *,
        after_s: float,
        max_checks: int,
        interval_s: float,
    ):
        self._pool = pool
        self._channel = channel
        self._fetch = fetch
        self._after = after_s
        self._max_checks = max_checks
        self._interval = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval_s` until `stop` is set."""
        await every(self._interval, stop, self.check_once, f"receipts.{self._channel}")

    async def check_once(self) -> int:
        """One round; how many deliveries it asked about."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await receipts.overdue(conn, self._channel, self._after, self._max_checks)
            for row in rows:
                try:
                    found = await self._fetch(row["provider_id"])
                except ProviderError as exc:
                    RECEIPTS.labels(self._channel, "error").inc()
                    log.warning("receipt.lookup_failed", delivery_id=row["id"], error=str(exc))
                    continue  # not counted as a check: asked again next round
                change = {} if found is None else sms_status_change(row, found[0], found[1], datetime.now(UTC))
                await receipts.checked(conn, row["id"], change)
                RECEIPTS.labels(self._channel, "changed" if change else "unchanged").inc()
                log.info(
                    "receipt.checked",
                    delivery_id=row["id"],
                    provider_status=found[0] if found else None,
                    state=change.get("state", row["state"]),
                )
        return len(rows)
