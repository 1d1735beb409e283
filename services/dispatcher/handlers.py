"""A send command: hold a slot → claim → render → the channel's sender → record; safe twice."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
import structlog
from prometheus_client import Counter

from services.dispatcher.concurrency import Slot, SlotGate
from services.dispatcher.decide import Decision, decide
from shared.db import sending
from shared.domain.retry import next_attempt
from shared.providers.base import Accepted, ProviderError

log = structlog.get_logger()

OUTCOMES = Counter("campaigns_dispatch_total", "Dispatch outcomes", ["channel", "outcome"])


class Sender(Protocol):
    """One channel's way to hand a claimed delivery to its provider."""

    channel: str
    #: True when the slot stays held after the hand-over (a call, until it ends: the tracker frees it).
    holds_slot: bool
    #: How long a slot lease lasts (None: the gate's default, provider timeout + 30 s).
    lease_s: float | None

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """Hand it over; Accepted, or ProviderError saying whether to retry."""
        ...

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal | None:
        """What the send costs at the account's prices (None: charged when it ends, e.g. a call)."""
        ...


class SendHandler:
    """Handles `send.<channel>` commands for one channel."""

    def __init__(self, pool: asyncpg.Pool, gate: SlotGate, sender: Sender):
        self._pool = pool
        self._gate = gate
        self._sender = sender
        self._channel = sender.channel

    async def __call__(self, message: Any) -> None:
        delivery_id, campaign_id = message.delivery_id, message.campaign_id

        async def still_queued() -> bool:
            return await sending.state(self._pool, delivery_id) == "queued"

        async with self._gate.hold(
            campaign_id, delivery_id, still_queued, keep=self._sender.holds_slot, lease_s=self._sender.lease_s
        ) as slot:
            if slot.held:
                slot.keep = await self._send(delivery_id, slot)

    async def _send(self, delivery_id: str, slot: Slot) -> bool:
        """Send it; True when the provider has it and the slot must stay held (a call under way).
        A send that frees its slot does so in the transaction that records it (`slot.freed`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await sending.load_for_update(conn, delivery_id)
            if row is None:
                return False
            decision = decide(row)
            if decision.action == "send":
                await sending.mark_sending(conn, delivery_id, decision.text or "")
            elif decision.action == "pause":
                await sending.back_to_planned(conn, delivery_id)
            elif decision.action in ("cancel", "skip", "fail"):
                state = {"cancel": "cancelled", "skip": "skipped", "fail": "failed"}[decision.action]
                await sending.finish(conn, delivery_id, state, decision.reason)
        OUTCOMES.labels(self._channel, decision.action).inc()
        if decision.action != "send":
            log.info("delivery.not_sent", action=decision.action, reason=decision.reason)
            return False
        try:
            accepted = await self._sender.send(row, decision)
        except ProviderError as exc:
            await self._failed(row, exc)
            return False
        frees = not self._sender.holds_slot
        await sending.mark_sent(
            self._pool,
            delivery_id,
            accepted.provider_id,
            accepted.status,
            self._sender.cost(row, decision),
            free_slot_of=row["campaign_id"] if frees else None,
        )
        slot.freed = frees
        OUTCOMES.labels(self._channel, "sent").inc()
        log.info("delivery.sent", provider_id=accepted.provider_id)
        return self._sender.holds_slot

    async def _failed(self, row: asyncpg.Record, exc: ProviderError) -> None:
        delivery_id = row["id"]
        if exc.unknown:
            # The provider may have taken it: leave it `sending` for the reconciler, never resend blindly.
            log.warning("delivery.outcome_unknown", error=str(exc))
            OUTCOMES.labels(self._channel, "unknown").inc()
            return
        if exc.verdict == "opt_out":
            await sending.opt_out(self._pool, row["contact_id"], self._channel)
        step = next_attempt(
            row["attempts"] + 1, row["max_retries"], row["retry_interval"], datetime.now(UTC), exc.verdict
        )
        if step.at is None:
            async with self._pool.acquire() as conn:
                await sending.finish(conn, delivery_id, "failed", str(exc))
            OUTCOMES.labels(self._channel, "failed").inc()
            log.info("delivery.failed", error=str(exc), reason=step.reason)
        else:
            await sending.schedule_retry(self._pool, delivery_id, step.at, str(exc))
            OUTCOMES.labels(self._channel, "retry").inc()
            log.info("delivery.retry", error=str(exc), at=step.at.isoformat(), reason=step.reason)
