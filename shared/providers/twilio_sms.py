"""SMS through the official twilio client (async), at any base URL (Twilio's own, or a peer)."""

from __future__ import annotations

import asyncio

import aiohttp
from twilio.base.exceptions import TwilioRestException

from shared.domain.retry import classify_twilio
from shared.providers.base import Accepted, Found, ProviderError
from shared.providers.twilio_client import TwilioClient


class TwilioSms(TwilioClient):
    """`SmsProvider` over Twilio's Messages API."""

    async def send_sms(self, *, to: str, from_: str, body: str, status_callback: str) -> Accepted:
        """POST …/Messages.json; ProviderError sorted into retry, fail or opt-out."""
        try:
            # The client ignores its own timeout (twilio-python#925): bound the call here.
            async with asyncio.timeout(self._timeout):
                message = await self.client.messages.create_async(
                    to=to, from_=from_, body=body, status_callback=status_callback
                )
        except TwilioRestException as exc:
            verdict = classify_twilio(exc.status, exc.code)
            raise ProviderError(f"twilio {exc.status} code {exc.code}: {exc.msg}", verdict, exc.code) from exc
        except TimeoutError as exc:
            raise ProviderError("twilio did not answer in time", "retry", unknown=True) from exc
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached Twilio: safe to try again.
            raise ProviderError(f"cannot reach twilio: {exc}", "retry") from exc
        except aiohttp.ClientError as exc:
            raise ProviderError(f"twilio request failed: {exc}", "retry", unknown=True) from exc
        return Accepted(provider_id=str(message.sid), status=str(message.status or "queued"))

    async def find_sms(self, *, to: str, from_: str | None, body: str) -> Found | None:
        """Look for a message to `to` with `body` among Twilio's recent ones (GET Messages.json)."""
        async with asyncio.timeout(self._timeout):
            messages = await self.client.messages.list_async(to=to, limit=50)
        for message in messages:
            if message.body == body and (from_ is None or message.from_ == from_):
                return Found(provider_id=str(message.sid), status=str(message.status))
        return None

    async def fetch_status(self, sid: str) -> tuple[str, str | None] | None:
        """A message's status at Twilio and its error code (GET …/Messages/{sid}.json); None if
        Twilio does not know the sid; ProviderError when it cannot be asked now."""
        try:
            async with asyncio.timeout(self._timeout):
                message = await self.client.messages(sid).fetch_async()
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise ProviderError(f"twilio {exc.status} code {exc.code}: {exc.msg}", "retry", exc.code) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderError(f"twilio status lookup failed: {exc!r}", "retry") from exc
        code = message.error_code
        return str(message.status), (str(code) if code is not None else None)
