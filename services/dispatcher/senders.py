"""The channels' senders: what each needs beyond the shared dispatch path."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol
from urllib.parse import urlencode

import asyncpg

from services.dispatcher.decide import Decision
from shared.domain.pricing import sms_segments
from shared.providers.base import Accepted, SmsProvider


class Sender(Protocol):
    """One channel's way to hand a claimed delivery to its provider."""

    channel: str

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """Hand it over; Accepted, or ProviderError saying whether to retry."""
        ...

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal:
        """What the send costs at the account's prices, held when it is claimed (a call's longest,
        settled when it ends)."""
        ...


class SmsSender:
    """SMS over Twilio, with a status callback that carries the delivery id (signed by Twilio)."""

    channel = "sms"

    def __init__(self, provider: SmsProvider, public_url: str, default_from: str):
        self._provider = provider
        self._public_url = public_url.rstrip("/")
        self._default_from = default_from

    def callback_url(self, delivery_id: str) -> str:
        """Where the provider reports this message's status."""
        return f"{self._public_url}/webhooks/twilio/sms/status?{urlencode({'delivery_id': delivery_id})}"

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """POST the message."""
        return await self._provider.send_sms(
            to=row["to_address"],
            from_=row["from_number"] or self._default_from,
            body=decision.text or "",
            status_callback=self.callback_url(row["id"]),
        )

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal:
        """The SMS price per segment."""
        return row["price_sms"] * sms_segments(decision.text or "")  # type: ignore[no-any-return]
