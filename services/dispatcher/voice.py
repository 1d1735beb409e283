"""Voice: a call is placed here and then lives on its own. It counts against `max_concurrent` while
it lasts (its delivery is `sent` until the call ends: the tracker's status callback, or the receipt
poller when that callback was lost, moves it on) and is charged by the minute when it ends."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol
from urllib.parse import urlencode

import asyncpg
import structlog

from services.dispatcher.decide import Decision
from shared.domain.calls import amd_param, call_minutes, machine_detection
from shared.providers.base import Accepted, Found

log = structlog.get_logger()


class CallProvider(Protocol):
    """Places a call whose TwiML comes from `answer_url`."""

    async def place_call(
        self,
        *,
        to: str,
        from_: str,
        answer_url: str,
        status_callback: str,
        time_limit: int,
        ring_timeout: int,
        machine_detection: str | None = None,
    ) -> Accepted:
        """Accepted, or ProviderError saying whether to retry; `machine_detection` is Twilio's
        `MachineDetection` (None: no answering machine detection)."""
        ...


class CallLookup(Protocol):
    """Finds a call the provider may have placed before we could record it."""

    async def find_call(self, *, to: str, from_: str | None, since: datetime) -> Found | None:
        """The call to `to` created since `since`, or None."""
        ...


class VoiceSender:
    """Calls over Twilio; the answer, speech and status webhooks carry the delivery id (signed)."""

    channel = "voice"

    def __init__(
        self,
        provider: CallProvider,
        public_url: str,
        default_from: str,
        ring_timeout: int,
        default_time_limit: int,
    ):
        self._provider = provider
        self._public_url = public_url.rstrip("/")
        self._default_from = default_from
        self._ring_timeout = ring_timeout
        self._default_time_limit = default_time_limit

    def webhook_url(self, kind: str, delivery_id: str) -> str:
        """The tracker's `answer` or `status` webhook for this delivery's call."""
        return f"{self._public_url}/webhooks/twilio/voice/{kind}?{urlencode({'delivery_id': delivery_id})}"

    def time_limit(self, row: asyncpg.Record) -> int:
        """The call's longest duration: the campaign's `call_duration_limit`, else the default."""
        return int((row["voice"] or {}).get("call_duration_limit") or self._default_time_limit)

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """Place the call."""
        time_limit = self.time_limit(row)
        # Synchronous AMD (no AsyncAmd): the answer webhook then carries `AnsweredBy`, and the
        # tracker chooses the call's TwiML from it: a voicemail waits for the beep (amd_param says
        # why DetectMessageEnd), a hang-up is decided as early as Twilio knows (Enable).
        amd = amd_param(machine_detection(row["voice"]))
        accepted = await self._provider.place_call(
            to=row["to_address"],
            from_=row["from_number"] or self._default_from,
            answer_url=self.webhook_url("answer", row["id"]),
            status_callback=self.webhook_url("status", row["id"]),
            time_limit=time_limit,
            ring_timeout=self._ring_timeout,
            machine_detection=amd,
        )
        log.info("call.placed", provider_id=accepted.provider_id, time_limit=time_limit, machine_detection=amd)
        return accepted

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal:
        """Every minute the call may last (held; the tracker settles the minutes it took)."""
        return row["price_voice_minute"] * call_minutes(self.time_limit(row))  # type: ignore[no-any-return]
