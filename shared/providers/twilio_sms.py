"""SMS through the official twilio client (async), at any base URL (Twilio's own, or a peer)."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.providers.base import Accepted, Found
from shared.providers.twilio_client import TwilioClient

#: How far a message's creation at the provider may seem to precede our claim (clock skew).
SKEW = timedelta(seconds=60)


class TwilioSms(TwilioClient):
    """`SmsProvider` over Twilio's Messages API."""

    async def send_sms(self, *, to: str, from_: str, body: str, status_callback: str) -> Accepted:
        """POST …/Messages.json; ProviderError sorted into retry, fail or opt-out."""
        async with self._errors():
            message = await self.client.messages.create_async(
                to=to, from_=from_, body=body, status_callback=status_callback
            )
        return Accepted(provider_id=str(message.sid), status=str(message.status or "queued"))

    async def find_sms(self, *, to: str, from_: str | None, body: str, since: datetime) -> Found | None:
        """Look for a message to `to` with `body` created since `since` (less a minute of clock
        skew) among Twilio's recent ones (GET Messages.json): an older one with the same text is
        another run's or another attempt's, not this one's."""
        async with self._errors():
            messages = await self.client.messages.list_async(to=to, limit=50)
        for message in messages:
            created = message.date_created
            recent = created is None or created >= since - SKEW
            if recent and message.body == body and (from_ is None or message.from_ == from_):
                return Found(provider_id=str(message.sid), status=str(message.status))
        return None

    async def fetch_status(self, sid: str) -> tuple[str, str | None] | None:
        """A message's status at Twilio and its error code (GET …/Messages/{sid}.json); None if
        Twilio does not know the sid; ProviderError when it cannot be asked now."""
        message = await self._known(self.client.messages(sid).fetch_async)
        if message is None:
            return None
        code = message.error_code
        return str(message.status), (str(code) if code is not None else None)
