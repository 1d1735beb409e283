"""The Calls half of the sandbox Twilio: `POST …/Calls.json` places a simulated call that rings,
answers (or is busy, or not answered), fetches the answer URL's TwiML, says each `<Say>`, answers
each `<Gather>` with the number's scripted speech, sends the status callbacks Twilio would (signed,
with SequenceNumber), and records everything said per call.

Scripting, per number: `fake.call_outcomes["+1…"] = ["busy", "answer"]`,
`fake.speech["+1…"] = ["Yes", "Stop calling me"]`, `fake.call_durations["+1…"] = 125`,
`fake.answered_by["+1…"] = "machine"` (answering machine detection, when the call asks for it with
`MachineDetection`: the answer URL is fetched with `AnsweredBy`, as Twilio's synchronous AMD does; a
machine records what is said to it, kept as the call's `voicemail`).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
import structlog
from aiohttp import web

if TYPE_CHECKING:
    from shared.sandbox.twilio import Recorded

log = structlog.get_logger()

#: What a contact says when the number has no script.
DEFAULT_SPEECH = ("Yes, that works for me.",)
#: Outcomes of a call that never connects.
UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})
#: Keys of a call kept by the fake, beyond the JSON Twilio answers with.
_PRIVATE = frozenset(
    {"said", "heard", "listened_in", "outcome", "time_limit", "webhook_errors", "machine_detection", "voicemail"}
)
#: The language Twilio recognises speech in when a `<Gather>` names none.
GATHER_LANGUAGE = "en-US"
#: `AnsweredBy` values meaning a machine picked up.
MACHINES = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})
#: Twilio's `MachineDetection` values.
DETECTION_MODES = frozenset({"Enable", "DetectMessageEnd"})
#: The status callback event that reports each call status (final ones always report as `completed`).
_EVENT = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
#: Most TwiML documents one simulated call follows (a loop guard).
_MAX_TURNS = 50


class FakeCalls:
    """Mixed into FakeTwilio, whose dataclass fields hold the state (`calls`, `call_outcomes`, …)."""

    account_sid: str
    script: dict[str, list[tuple[int, int | None]]]
    calls: dict[str, dict[str, Any]]
    call_outcomes: dict[str, list[str]]
    speech: dict[str, list[str]]
    call_durations: dict[str, int]
    answered_by: dict[str, str]
    lost_callbacks: dict[str, set[str]]
    call_step_delay: float
    calls_in_progress: int
    peak_calls_in_progress: int
    _tasks: set[asyncio.Task[None]]
    _session: aiohttp.ClientSession | None

    if TYPE_CHECKING:

        async def _record(self, request: web.Request) -> Recorded: ...
        def _authorised(self, request: web.Request) -> bool: ...
        def scripted_failure(self, to: str | None) -> web.Response | None: ...
        @staticmethod
        def _error(status: int, code: int | None, message: str) -> web.Response: ...
        def signed(self, url: str, params: dict[str, str]) -> dict[str, str]: ...

    def calls_to(self, to: str) -> list[dict[str, Any]]:
        """Every call placed to `to`, oldest first (with `said`: each `<Say>`, `heard`: each speech,
        `listened_in`: each `<Gather>`'s speech recognition language)."""
        return [c for c in self.calls.values() if c["to"] == to]

    @staticmethod
    def _public(call: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in call.items() if k not in _PRIVATE}

    async def _create_call(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        to, from_ = recorded.get("To"), recorded.get("From")
        scripted = self.scripted_failure(to)
        if scripted is not None:
            return scripted
        if not to:
            return self._error(400, 21201, "No 'To' number is specified")
        if not from_:
            return self._error(400, 21213, "No 'From' number is specified")
        if not recorded.get("Url"):
            return self._error(400, 21205, "Url parameter is required.")
        detection = recorded.get("MachineDetection")
        if detection is not None and detection not in DETECTION_MODES:
            return self._error(400, 21201, f"MachineDetection must be Enable or DetectMessageEnd, not {detection!r}")
        sid = "CA" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        outcomes = self.call_outcomes.get(to)
        call: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": from_,
            "from_formatted": from_,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "answered_by": None,
            "caller_name": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "forwarded_from": None,
            "group_sid": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
            "subresource_uris": {},
            "said": [],
            "heard": [],
            "listened_in": [],
            "webhook_errors": [],
            "outcome": outcomes.pop(0) if outcomes else "answer",
            "time_limit": int(recorded.get("TimeLimit") or 14400),
            "machine_detection": detection,
            "voicemail": None,
        }
        self.calls[sid] = call
        self.calls_in_progress += 1
        self.peak_calls_in_progress = max(self.peak_calls_in_progress, self.calls_in_progress)
        task = asyncio.create_task(self._simulate_call(call, recorded))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(self._public(call), status=201)

    async def _list_calls(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        to = request.query.get("To")
        found = [self._public(c) for c in reversed(self.calls.values()) if to is None or c["to"] == to]
        page = {"calls": found, "page": 0, "page_size": 50, "next_page_uri": None, "uri": request.path}
        return web.json_response(page)

    async def _fetch_call(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(self._public(call))

    async def _simulate_call(self, call: dict[str, Any], recorded: Recorded) -> None:
        """Ring, then end unanswered or hold the conversation; every step reported as Twilio would."""
        callback = recorded.get("StatusCallback")
        events = set(recorded.form.get("StatusCallbackEvent", []))
        sequence = iter(range(1000))
        ended = False

        async def report(status: str, **extra: str) -> None:
            call["status"] = status
            call["date_updated"] = format_datetime(datetime.now(UTC))
            if status in self.lost_callbacks.get(call["to"], ()):
                return  # lost on the way (the call's own record has it: a lookup finds it)
            if callback and _EVENT.get(status, "completed") in (events | {"completed"}):
                params = {
                    **self._call_params(call),
                    "CallStatus": status,
                    "SequenceNumber": str(next(sequence)),
                    "CallbackSource": "call-progress-events",
                    "Timestamp": call["date_updated"],
                    **extra,
                }
                await self._post_signed(call, callback, params)

        def end() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self.calls_in_progress -= 1

        try:
            for status in ("initiated", "ringing"):
                await asyncio.sleep(self.call_step_delay)
                await report(status)
            await asyncio.sleep(self.call_step_delay)
            if call["outcome"] in UNANSWERED:
                end()
                await report(call["outcome"], CallDuration="0")
                return
            started = time.monotonic()
            call["start_time"] = format_datetime(datetime.now(UTC))
            call["answered_by"] = self._detect(call)
            await report("in-progress")
            await self._converse(call, recorded, started)
            duration = self.call_durations.get(call["to"]) or max(1, math.ceil(time.monotonic() - started))
            call["duration"], call["end_time"] = str(duration), format_datetime(datetime.now(UTC))
            end()  # before the callback: the platform may place its next call as soon as it hears
            await report("completed", CallDuration=str(duration))
        finally:
            end()

    def _call_params(self, call: dict[str, Any]) -> dict[str, str]:
        params = {
            "CallSid": call["sid"],
            "AccountSid": self.account_sid,
            "From": call["from"] or "",
            "To": call["to"],
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        if call["answered_by"]:
            params["AnsweredBy"] = call["answered_by"]
        return params

    def _detect(self, call: dict[str, Any]) -> str | None:
        """The call's `AnsweredBy` as Twilio's AMD would report it under its `MachineDetection`
        (None: detection not asked for). Scripted per number in `answered_by`."""
        mode = call["machine_detection"]
        if mode is None:
            return None
        who = self.answered_by.get(call["to"], "human")
        if who == "machine" or who in MACHINES:
            # `Enable` answers as soon as it hears a machine; only `DetectMessageEnd` waits for the
            # end of the greeting, and reports how it ended.
            if mode == "Enable":
                return "machine_start"
            return "machine_end_beep" if who in ("machine", "machine_start") else who
        return who

    async def _converse(self, call: dict[str, Any], recorded: Recorded, started: float) -> None:
        """Follow the TwiML: `<Say>` is recorded, `<Gather>` posts the next utterance (or nothing once
        they run out, with actionOnEmptyResult), `<Hangup/>` or the end of a document ends the call."""
        machine = call["answered_by"] in MACHINES
        utterances = [] if machine else list(self.speech.get(call["to"]) or DEFAULT_SPEECH)
        url = recorded.get("Url") or ""
        base = {**self._call_params(call), "CallStatus": "in-progress"}
        document = await self._post_signed(call, url, base)
        for _ in range(_MAX_TURNS):
            if document is None or time.monotonic() - started > call["time_limit"]:
                return
            try:
                root = ET.fromstring(document)  # noqa: S314 (the platform's own TwiML, in a sandbox)
            except ET.ParseError:
                call["webhook_errors"].append(f"not TwiML: {document[:200]}")
                return
            request: tuple[str, dict[str, str]] | None = None
            for verb in root:
                if verb.tag == "Hangup":
                    return
                if verb.tag == "Say":
                    await self._say(call, verb.text or "")
                elif verb.tag == "Gather":
                    call["listened_in"].append(verb.get("language") or GATHER_LANGUAGE)
                    for inner in verb.iter("Say"):
                        await self._say(call, inner.text or "")
                    action = urljoin(url, verb.get("action") or url)
                    if utterances:
                        speech = utterances.pop(0)
                        call["heard"].append(speech)
                        await asyncio.sleep(self.call_step_delay)
                        request = (action, {**base, "SpeechResult": speech, "Confidence": "0.92"})
                    elif verb.get("actionOnEmptyResult") == "true":
                        request = (action, base)
                    if request:
                        break
                elif verb.tag == "Redirect":
                    request = (urljoin(url, (verb.text or "").strip()), base)
                    break
            if request is None:
                return  # the end of the document: Twilio hangs up
            url = request[0]
            document = await self._post_signed(call, *request)

    async def _say(self, call: dict[str, Any], text: str) -> None:
        call["said"].append(text)
        if call["answered_by"] in MACHINES:  # the machine records it
            call["voicemail"] = " ".join(call["said"])
        await asyncio.sleep(self.call_step_delay)

    async def _post_signed(self, call: dict[str, Any], url: str, params: dict[str, str]) -> str | None:
        """POST a signed webhook as Twilio does (retrying a failed connection); the answer's body, or
        None when it failed."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = self.signed(url, params)
        for attempt in range(3):
            try:
                async with self._session.post(url, data=params, headers=headers) as response:
                    text = await response.text()
                    if response.status < 300:
                        return text
                    call["webhook_errors"].append(f"{response.status} from {url}")
                    if response.status < 500:
                        return None
            except aiohttp.ClientError as exc:
                log.warning("sandbox.call_webhook_failed", url=url, error=str(exc), attempt=attempt)
            await asyncio.sleep(0.2 * (attempt + 1))
        return None
