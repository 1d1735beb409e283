"""The official twilio client (async) at any base URL: Twilio's own, or a peer on loopback."""

from __future__ import annotations

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client


class TwilioClient:
    """Owns one async twilio `Client` whose `api` domain (Messages, Calls) points at `base_url`."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, timeout: float):
        self._http = AsyncTwilioHttpClient()
        self.client = Client(account_sid, auth_token, http_client=self._http)
        # the `api` domain's base URL is read on every request
        self.client.api.base_url = base_url.rstrip("/")
        # the client ignores its own timeout (twilio-python#925): callers bound each call with this
        self._timeout = timeout

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
