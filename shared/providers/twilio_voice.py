"""Voice calls through the official twilio client (async), at any base URL (Twilio's own, or a peer)."""

from __future__ import annotations

from datetime import datetime

from shared.providers.base import Accepted, Found
from shared.providers.twilio_client import TwilioClient

#: Call progress events we subscribe to; Twilio sends each as its own callback (`answered` arrives
#: as CallStatus `in-progress`).
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class TwilioVoice(TwilioClient):
    """Places calls with Twilio's Calls API; the call's TwiML comes from the tracker's answer URL."""

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
        """POST …/Calls.json; ProviderError sorted into retry or fail (a timeout: outcome unknown).
        `machine_detection` (`Enable` | `DetectMessageEnd`) asks for synchronous AMD: Twilio fetches
        `answer_url` once it has decided, with `AnsweredBy` in the request."""
        async with self._errors():
            call = await self.client.calls.create_async(
                to=to,
                from_=from_,
                url=answer_url,
                status_callback=status_callback,
                status_callback_event=STATUS_EVENTS,
                time_limit=time_limit,
                timeout=ring_timeout,
                machine_detection=machine_detection,  # None: left out of the request (no AMD)
            )
        return Accepted(provider_id=str(call.sid), status=str(call.status or "queued"))

    async def find_call(self, *, to: str, from_: str | None, since: datetime) -> Found | None:
        """The newest call to `to` (from `from_`) created at or after `since`, or None (GET Calls.json)."""
        async with self._errors():
            calls = await self.client.calls.list_async(to=to, limit=50)
        for call in calls:
            created = call.date_created
            if (from_ is None or call.from_ == from_) and (created is None or created >= since.replace(microsecond=0)):
                return Found(provider_id=str(call.sid), status=str(call.status))
        return None

    async def fetch_call(self, sid: str) -> tuple[str, int | None] | None:
        """A call's status at Twilio and its duration in seconds (GET …/Calls/{sid}.json); None if
        Twilio does not know the sid; ProviderError when it cannot be asked now."""
        call = await self._known(self.client.calls(sid).fetch_async)
        if call is None:
            return None
        duration = str(call.duration or "")
        return str(call.status), (int(duration) if duration.isdigit() else None)
