"""SendSms: claim → hold a slot → render → provider → record; safe to receive twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import structlog
from prometheus_client import Counter

from services.dispatcher.concurrency import SlotGate
from services.dispatcher.decide import decide
from services.dispatcher.providers.base import ProviderError, SmsProvider
from shared.db import sending
from shared.domain.pricing import sms_segments
from shared.domain.retry import next_attempt

log = structlog.get_logger()

OUTCOMES = Counter("campaigns_dispatch_total", "Dispatch outcomes", ["channel", "outcome"])


class SmsHandler:
    """Handles `send.sms` commands."""

    def __init__(self, pool: asyncpg.Pool, gate: SlotGate, provider: SmsProvider, public_url: str, default_from: str):
        self._pool = pool
        self._gate = gate
        self._provider = provider
        self._public_url = public_url.rstrip("/")
        self._default_from = default_from

    def callback_url(self, delivery_id: str) -> str:
        """Where the provider reports this message's status (the delivery id rides along, signed)."""
        return f"{self._public_url}/webhooks/twilio/sms/status?{urlencode({'delivery_id': delivery_id})}"

    async def __call__(self, message: Any) -> None:
        delivery_id, campaign_id = message.delivery_id, message.campaign_id

        async def still_queued() -> bool:
            return await sending.state(self._pool, delivery_id) == "queued"

        async with self._gate.hold(campaign_id, delivery_id, still_queued) as held:
            if held:
                await self._send(delivery_id)

    async def _send(self, delivery_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await sending.load_for_update(conn, delivery_id)
            if row is None:
                return
            decision = decide(row)
            if decision.action == "send":
                await sending.mark_sending(conn, delivery_id, decision.text or "")
            elif decision.action == "pause":
                await sending.back_to_planned(conn, delivery_id)
            elif decision.action in ("cancel", "skip", "fail"):
                state = {"cancel": "cancelled", "skip": "skipped", "fail": "failed"}[decision.action]
                await sending.finish(conn, delivery_id, state, decision.reason)
        OUTCOMES.labels("sms", decision.action).inc()
        if decision.action != "send":
            log.info("delivery.not_sent", action=decision.action, reason=decision.reason)
            return
        try:
            accepted = await self._provider.send_sms(
                to=row["to_address"],
                from_=row["from_number"] or self._default_from,
                body=decision.text or "",
                status_callback=self.callback_url(delivery_id),
            )
        except ProviderError as exc:
            await self._failed(row, exc)
            return
        cost = row["price_sms"] * sms_segments(decision.text or "")
        await sending.mark_sent(self._pool, delivery_id, accepted.provider_id, accepted.status, cost)
        OUTCOMES.labels("sms", "sent").inc()
        log.info("delivery.sent", provider_id=accepted.provider_id)

    async def _failed(self, row: asyncpg.Record, exc: ProviderError) -> None:
        delivery_id = row["id"]
        if exc.unknown:
            # The provider may have taken it: leave it `sending` for the reconciler, never resend blindly.
            log.warning("delivery.outcome_unknown", error=str(exc))
            OUTCOMES.labels("sms", "unknown").inc()
            return
        if exc.verdict == "opt_out":
            await sending.opt_out(self._pool, row["contact_id"], "sms")
        step = next_attempt(row["attempts"] + 1, row["max_retries"], row["retry_interval"], datetime.now(UTC), exc.verdict)
        if step.at is None:
            async with self._pool.acquire() as conn:
                await sending.finish(conn, delivery_id, "failed", str(exc))
            OUTCOMES.labels("sms", "failed").inc()
            log.info("delivery.failed", error=str(exc), reason=step.reason)
        else:
            await sending.schedule_retry(self._pool, delivery_id, step.at, str(exc))
            OUTCOMES.labels("sms", "retry").inc()
            log.info("delivery.retry", error=str(exc), at=step.at.isoformat(), reason=step.reason)
