"""Receipts that never came: a delivery accepted by the provider whose final status callback was
lost (the tracker down for longer than Twilio retries, a network cut) is looked up at the provider,
and the status it reports is applied exactly as the callback would have been (never backwards).

SMS: the message's status. Voice: the call's status and duration; a call found ended is charged
and stops counting against `max_concurrent`, as its `completed` callback would have done.

Each lookup runs outside any transaction; what it finds is applied in a short one that locks the
delivery and applies the same pure rule the callbacks use, on the row as it is then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Counter

from shared.db import calls, receipts, tracking
from shared.domain.deliveries import sms_status_change
from shared.providers.base import ProviderError
from shared.providers.twilio_sms import TwilioSms
from shared.providers.twilio_voice import TwilioVoice
from shared.runtime import every

log = structlog.get_logger()

RECEIPTS = Counter(
    "campaigns_receipt_checks_total", "Overdue receipts looked up at the provider", ["channel", "result"]
)

#: Deliveries looked up per round.
BATCH = 25

#: Looks one overdue delivery up and applies what it finds; whether anything changed.
Resolve = Callable[[asyncpg.Pool, asyncpg.Record], Awaitable[bool]]


class ReceiptPoller:
    """Asks the provider about one channel's overdue receipts (see shared/db/receipts.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        resolve: Resolve,
        *,
        after_s: float,
        max_checks: int,
        interval_s: float,
    ):
        self._pool = pool
        self._channel = channel
        self._resolve = resolve
        self._after = after_s
        self._max_checks = max_checks
        self._interval = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval_s` until `stop` is set."""
        await every(self._interval, stop, self.check_once, f"receipts.{self._channel}")

    async def check_once(self) -> int:
        """One round; how many deliveries it asked about."""
        rows = await receipts.overdue(self._pool, self._channel, self._after, self._max_checks, BATCH)
        asked = 0
        for row in rows:
            if not await receipts.take(self._pool, row["id"], row["status_checks"]):
                continue
            asked += 1
            try:
                changed = await self._resolve(self._pool, row)
            except ProviderError as exc:
                # The provider cannot be asked now: stop the round; this delivery is asked again at
                # its next turn.
                RECEIPTS.labels(self._channel, "error").inc()
                log.warning("receipt.lookup_failed", delivery_id=row["id"], error=str(exc))
                break
            RECEIPTS.labels(self._channel, "changed" if changed else "unchanged").inc()
            log.info("receipt.checked", delivery_id=row["id"], changed=changed)
        return asked


def sms_receipts(provider: TwilioSms) -> Resolve:
    """An SMS's status at Twilio, applied by the status callbacks' rule."""

    async def resolve(pool: asyncpg.Pool, row: asyncpg.Record) -> bool:
        found = await provider.fetch_status(row["provider_id"])
        if found is None:
            return False
        async with pool.acquire() as conn, conn.transaction():
            current = await receipts.lock(conn, row["id"])
            if current is None:
                return False
            change = sms_status_change(current, found[0], found[1], datetime.now(UTC))
            await tracking.update_delivery(conn, row["id"], change)
        return bool(change)

    return resolve


def call_receipts(provider: TwilioVoice) -> Resolve:
    """A call's status at Twilio, applied as its status callback would be (an ended call is
    charged, and no longer counts as in flight)."""

    async def resolve(pool: asyncpg.Pool, row: asyncpg.Record) -> bool:
        found = await provider.fetch_call(row["provider_id"])
        if found is None:
            return False
        status, duration = found
        async with pool.acquire() as conn, conn.transaction():
            delivery = await calls.call_for_update(conn, row["id"])
            if delivery is None:
                return False
            outcome = await calls.apply_status(conn, delivery, row["provider_id"], status, duration, None)
        return bool(outcome.change)

    return resolve
