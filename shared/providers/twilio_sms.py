"""SMS through the official twilio client (async), at any base URL (Twilio's own, or a peer)."""

from __future__ import annotations

from shared.providers.base import Accepted, Found
from shared.providers.twilio_client import TwilioClient


class TwilioSms(TwilioClient):
    """`SmsProvider` over Twilio's Messages API."""

    async def send_sms(self, *, to: str, from_: str, body: str, status_callback: str) -> Accepted:
        """POST …/Messages.json; ProviderError sorted into retry, fail or opt-out."""
        async with self._errors():
            message = await self.client.messages.create_async(
                to=to, from_=from_, body=body, status_callback=status_callback
            )
        return Accepted(provider_id=str(message.sid), status=str(message.status or "queued"))

    async def find_sms(self, *, to: str, from_: str | None, body: str) -> Found | None:
        """Look for a message to `to` with `body` among Twilio's recent ones (GET Messages.json)."""
        async with self._errors():
            messages = await self.client.messages.list_async(to=to, limit=50)
        for message in messages:
            if message.body == body and (from_ is None or message.from_ == from_):
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
