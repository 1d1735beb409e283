"""The official twilio client (async) at any base URL: Twilio's own, or a peer on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from yarl import URL

from shared.domain.retry import classify_twilio
from shared.providers.base import ProviderError

T = TypeVar("T")

#: Twilio's error code for a resource it does not know.
NOT_FOUND = 20404


def form_body(fields: Mapping[str, Any]) -> bytes | None:
    """The fields as an application/x-www-form-urlencoded body, escaped by yarl's quoter in C
    (aiohttp's FormData escapes byte by byte in Python: 38 us for a message's form, this 4); None
    for a value yarl does not take, which aiohttp then encodes itself."""
    try:
        return URL.build(query=fields).raw_query_string.encode("ascii")
    except (TypeError, ValueError):
        return None


class _FormSession:
    """The aiohttp session the twilio client sends through, its form bodies encoded by `form_body`
    (the client hands aiohttp a dict, which aiohttp would encode in Python)."""

    def __init__(self, session: aiohttp.ClientSession):
        self._session = session

    def request(
        self, method: str, url: str, *, data: Any = None, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Any:
        body = form_body(data) if isinstance(data, Mapping) else None
        if body is not None:
            data, headers = body, {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        return self._session.request(method, url, data=data, headers=headers, **kwargs)

    async def close(self) -> None:
        await self._session.close()


class TwilioClient:
    """Owns one async twilio `Client` whose `api` domain (Messages, Calls) points at `base_url`."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, timeout: float, connections: int = 100):
        self._http = AsyncTwilioHttpClient(pool_connections=False)
        # our own session: as many connections as requests may be in flight (aiohttp's default: 100)
        self._http.session = _FormSession(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)))
        self.client = Client(account_sid, auth_token, http_client=self._http)
        # the `api` domain's base URL is read on every request
        self.client.api.base_url = base_url.rstrip("/")
        # the client ignores its own timeout (twilio-python#925): callers bound each call with this
        self._timeout = timeout

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Bound the request (the client ignores its own timeout, twilio-python#925) and sort failures."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
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

    async def _known(self, fetch: Callable[[], Awaitable[T]]) -> T | None:
        """`fetch()` (a GET of one resource) under `_errors`; None when Twilio does not know it."""
        try:
            async with self._errors():
                return await fetch()
        except ProviderError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    async def ownership(self, number: str) -> str | None:
        """How the platform's Twilio account holds `number`: `owned` (bought or ported to it,
        IncomingPhoneNumbers), `caller_id` (verified as a caller ID, OutgoingCallerIds), or None.
        ProviderError when Twilio cannot be asked."""
        async with self._errors():
            if await self.client.incoming_phone_numbers.list_async(phone_number=number, limit=1):
                return "owned"
            if await self.client.outgoing_caller_ids.list_async(phone_number=number, limit=1):
                return "caller_id"
        return None
