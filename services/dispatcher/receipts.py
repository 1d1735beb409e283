"""Receipts that never came: a delivery accepted by the provider whose final status callback was
lost (the tracker down for longer than Twilio retries, a network cut) is looked up at the provider,
and the status it reports is applied exactly as the callback would have been (never backwards).

SMS: the message's status. Voice: the call's status and duration; a call found ended is charged
and its concurrency slot freed, as its `completed` callback would have done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Counter

from shared.db import calls, receipts, slots, tracking
from shared.db.connection import Connection
from shared.domain.deliveries import sms_status_change
from shared.providers.base import ProviderError
from shared.providers.twilio_sms import TwilioSms
from shared.providers.twilio_voice import TwilioVoice
from shared.runtime import every

log = structlog.get_logger()

RECEIPTS = Counter(
    "campaigns_receipt_checks_total", "Overdue receipts looked up at the provider", ["channel", "result"]
)

#: Deliveries looked up per round (their rows stay locked until the round ends).
BATCH = 25

#: Looks one overdue delivery up and applies what it finds (inside the round's transaction):
#: (whether anything changed, the campaign whose slot to free once committed, or None).
Resolve = Callable[[Connection, asyncpg.Record], Awaitable[tuple[bool, str | None]]]


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
        ended: list[tuple[str, str]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await receipts.overdue(conn, self._channel, self._after, self._max_checks, BATCH)
            for row in rows:
                try:
                    changed, free_slot_of = await self._resolve(conn, row)
                except ProviderError as exc:
                    # The provider cannot be asked now: stop the round (its rows stay locked while it
                    # lasts) and ask again next round; this lookup is not counted as a check.
                    RECEIPTS.labels(self._channel, "error").inc()
                    log.warning("receipt.lookup_failed", delivery_id=row["id"], error=str(exc))
                    break
                await receipts.checked(conn, row["id"])
                if free_slot_of is not None:
                    ended.append((free_slot_of, row["id"]))
                RECEIPTS.labels(self._channel, "changed" if changed else "unchanged").inc()
                log.info("receipt.checked", delivery_id=row["id"], changed=changed)
        for campaign_id, delivery_id in ended:
            await slots.release(self._pool, campaign_id, delivery_id)
        return len(rows)


def sms_receipts(provider: TwilioSms) -> Resolve:
    """An SMS's status at Twilio, applied by the status callbacks' rule."""

    async def resolve(conn: Connection, row: asyncpg.Record) -> tuple[bool, str | None]:
        found = await provider.fetch_status(row["provider_id"])
        change = {} if found is None else sms_status_change(row, found[0], found[1], datetime.now(UTC))
        await tracking.update_delivery(conn, row["id"], change)
        return bool(change), None

    return resolve


def call_receipts(provider: TwilioVoice) -> Resolve:
    """A call's status at Twilio, applied as its status callback would be (an ended call is
    charged, and its slot freed)."""

    async def resolve(conn: Connection, row: asyncpg.Record) -> tuple[bool, str | None]:
        found = await provider.fetch_call(row["provider_id"])
        delivery = await calls.call_for_update(conn, row["id"])
        if found is None or delivery is None:
            return False, None
        status, duration = found
        outcome = await calls.apply_status(conn, delivery, row["provider_id"], status, duration, None)
        return bool(outcome.change), delivery["campaign_id"] if outcome.ended else None

    return resolve
