"""A stand-in for Twilio's REST API: accepts messages like Twilio does, records every request,
and sends the status callbacks Twilio would, signed with the auth token (X-Twilio-Signature).

Used by `campaigns up` when no credentials are set, and by the tests as their fake Twilio.
Failures can be scripted per recipient: `fake.script["+15550001111"] = [(429, 20429), (201, None)]`.
A message to one of Twilio's magic test numbers is refused as Twilio's test credentials refuse it
(`+15005550001` 21211 … `+15005550009` 21614: `twilio_numbers.MAGIC_TO`) unless `magic_numbers` is off;
one whose body is over 1,600 characters is refused with 21617, as Twilio refuses it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import html
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import structlog
from aiohttp import web

from shared.domain.twilio_signature import twilio_signature
from shared.providers.twilio_client import form_body
from shared.sandbox.callbacks import CallbackClient, CallbackError
from shared.sandbox.smtp import SandboxSmtp, sandbox_error
from shared.sandbox.twilio_calls import FakeCalls
from shared.sandbox.twilio_numbers import MAGIC_TO, FakeNumbers
from shared.web import start

#: Twilio's default opt-out and opt-in words on a long code (Advanced Opt-Out; REVOKE and OPTOUT
#: since 2025-04-29): a message of one of them alone blocks, or unblocks, the number's messages to
#: the phone that sent it.
TWILIO_OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
TWILIO_OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})

log = structlog.get_logger()

_PREFIX = "/2010-04-01/Accounts/{account}"
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: The longest message body Twilio sends (a longer one is error 21617), in UTF-16 units (an emoji
#: two), kept apart from our own limit (`shared/domain/sms.py`) so that the fake checks it.
MAX_BODY = 1600


def _too_long(body: str) -> bool:
    return len(body.encode("utf-16-le")) // 2 > MAX_BODY


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]

    def get(self, key: str) -> str | None:
        """The first value of a form field."""
        values = self.form.get(key)
        return values[0] if values else None


@dataclass
class FakeTwilio(FakeCalls, FakeNumbers):
    """The fake; `app()` is its aiohttp application. Calls: see `shared/sandbox/twilio_calls.py`;
    owned numbers and caller IDs: `shared/sandbox/twilio_numbers.py`."""

    account_sid: str
    auth_token: str
    #: Statuses sent to the StatusCallback after a message is accepted, in order.
    callback_statuses: tuple[str, ...] = ("sent", "delivered")
    callback_delay: float = 0.01
    #: To → statuses whose callback is lost on the way, for messages and calls (the message's or
    #: call's status still changes, so a lookup finds it, as at Twilio).
    lost_callbacks: dict[str, set[str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: To → canned answers (HTTP status, Twilio error code) used before accepting normally.
    script: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    #: Refuse messages to Twilio's magic failing test numbers as Twilio does (`MAGIC_TO`).
    magic_numbers: bool = True
    #: Twilio's opt-out filtering on a number: (our number, their phone) pairs whose phone texted a
    #: STOP word to the number; messages from it to them are refused (21610) until a START word.
    opted_out: set[tuple[str, str]] = field(default_factory=set)
    callbacks_sent: int = 0
    #: To → message-create requests for it (kept in every mode).
    creates: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Keep no request or message (only `creates`): a benchmark's million messages would otherwise
    #: hold gigabytes here; lookups then find nothing.
    light: bool = False
    #: Called with the To of each message-create request (a benchmark's stopwatch).
    on_create: Callable[[str], None] | None = None
    #: Seconds each message-create request takes (to make concurrency visible).
    response_delay: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0
    url: str = ""
    #: Where "a message comes in" webhooks go (the tracker's inbound URL), for simulated replies,
    #: and the number they are sent to when the simulation names none (the platform's default).
    inbound_url: str = ""
    inbound_to: str = ""
    #: Replies the sandbox received back (TwiML <Message>s) for simulated inbound messages, and sent
    #: (one over `MAX_BODY` is refused, as Twilio refuses it: logged, not kept here).
    replies: list[dict[str, str]] = field(default_factory=list)
    #: Calls placed, by sid: Twilio's JSON plus `said` (each <Say>), `heard` (each utterance), `outcome`.
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: To → outcomes of its next calls: "answer" (when none is left), "busy", "no-answer", "failed".
    call_outcomes: dict[str, list[str]] = field(default_factory=dict)
    #: To → what the contact says, one utterance per <Gather> (default: "Yes, that works for me.").
    speech: dict[str, list[str]] = field(default_factory=dict)
    #: To → who answers its calls when the call asks for answering machine detection
    #: (`MachineDetection`): "human" (the default), "machine" (reported as `machine_start` under
    #: `Enable`, `machine_end_beep` under `DetectMessageEnd`), "fax", "unknown", or an exact
    #: `AnsweredBy` value such as "machine_end_silence". A machine says nothing to a <Gather>, and
    #: what is <Say>d to it is its recorded message (the call's `voicemail`).
    answered_by: dict[str, str] = field(default_factory=dict)
    #: To → the CallDuration reported (default: the simulated call's length in whole seconds).
    call_durations: dict[str, int] = field(default_factory=dict)
    #: Seconds each step of a simulated call takes (ringing, answering, each thing said).
    call_step_delay: float = 0.02
    calls_in_progress: int = 0
    peak_calls_in_progress: int = 0
    #: Numbers the account owns (bought) beside Twilio's test numbers, and its verified caller IDs.
    owned_numbers: set[str] = field(default_factory=set)
    caller_ids: set[str] = field(default_factory=set)
    #: The sandbox SMTP server whose messages `GET /sandbox/emails` lists (none: no such route).
    mailbox: SandboxSmtp | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _callbacks: CallbackClient = field(default_factory=CallbackClient)

    def app(self) -> web.Application:
        """The aiohttp application answering Twilio's REST shapes."""
        app = web.Application()
        app.router.add_post(_PREFIX + "/Messages.json", self._create_message)
        app.router.add_get(_PREFIX + "/Messages.json", self._list_messages)
        app.router.add_get(_PREFIX + "/Messages/{sid}.json", self._fetch_message)
        app.router.add_post("/sandbox/inbound", self._simulate_inbound)
        app.router.add_get("/healthz", self._healthz)
        if self.mailbox is not None:
            app.router.add_get("/sandbox/emails", self.mailbox.list_emails)
        app.router.add_post(_PREFIX + "/Calls.json", self._create_call)
        app.router.add_get(_PREFIX + "/Calls.json", self._list_calls)
        app.router.add_get(_PREFIX + "/Calls/{sid}.json", self._fetch_call)
        app.router.add_get(_PREFIX + "/IncomingPhoneNumbers.json", self._list_incoming_numbers)
        app.router.add_get(_PREFIX + "/OutgoingCallerIds.json", self._list_caller_ids)
        app.on_cleanup.append(self._cleanup)
        return app

    @property
    def background(self) -> int:
        """Callbacks and simulated calls still under way."""
        return len(self._tasks)

    def sent_to(self, to: str) -> list[Recorded]:
        """Every message-create request for the number `to`."""
        return [r for r in self.requests if r.method == "POST" and r.get("To") == to]

    async def settle(self, within_s: float) -> None:
        """Let the callbacks and simulated calls under way finish, for up to `within_s` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)

    async def _cleanup(self, _: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self._callbacks.close()

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and request.match_info["account"] == self.account_sid
        )

    async def _record(self, request: web.Request) -> Recorded:
        if self.light:
            data = await request.post()
            return Recorded(request.method, request.path, {k: [str(v)] for k, v in data.items()}, {})
        form: dict[str, list[str]] = {}
        if request.method == "POST":
            data = await request.post()
            for key in data:
                form[key] = [str(v) for v in data.getall(key)]
        else:
            for key in request.query:
                form[key] = list(request.query.getall(key))
        recorded = Recorded(request.method, request.path, form, dict(request.headers))
        self.requests.append(recorded)
        return recorded

    def scripted_failure(self, to: str | None) -> web.Response | None:
        """The next scripted answer for `to` when it is a failure (see `script`)."""
        canned = self.script.get(to or "")
        if canned:
            status, code = canned.pop(0)
            if status >= 300:
                return self._error(status, code, f"scripted failure {code}")
        return None

    @staticmethod
    def _error(status: int, code: int | None, message: str) -> web.Response:
        body = {
            "code": code or status,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return web.json_response(body, status=status)

    async def _create_message(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.response_delay:
                await asyncio.sleep(self.response_delay)
            return await self._accept_message(request)
        finally:
            self.in_flight -= 1

    async def _accept_message(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        to, body = recorded.get("To"), recorded.get("Body")
        self.creates[to or ""] += 1
        if self.on_create is not None:
            self.on_create(to or "")
        scripted = self.scripted_failure(to)
        if scripted is not None:
            return scripted
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if self.magic_numbers and to in MAGIC_TO:
            return self._error(400, *MAGIC_TO[to])
        if (recorded.get("From") or "", to) in self.opted_out:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        if _too_long(body):
            return self._error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        sid = "SM" + uuid.uuid4().hex
        created = _http_date()
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": recorded.get("From"),
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "num_segments": "1",
            "num_media": "0",
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        if not self.light:
            self.messages[sid] = message
        callback = recorded.get("StatusCallback")
        if callback:
            task = asyncio.create_task(self._send_callbacks(callback, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(message, status=201)

    async def _list_messages(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        to = request.query.get("To")
        found = [m for m in self.messages.values() if to is None or m["to"] == to]
        return web.json_response(
            {"messages": found, "page": 0, "page_size": 50, "next_page_uri": None, "uri": request.path}
        )

    async def _fetch_message(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        message = self.messages.get(request.match_info["sid"])
        if message is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(message)

    async def _simulate_inbound(self, request: web.Request) -> web.Response:
        """`POST /sandbox/inbound {"from", "to", "body"}`: a contact texts back; answers with what
        the platform replied."""
        try:
            data = await request.json()
        except ValueError:
            return sandbox_error("body", 'a JSON object {"from", "to", "body"}')
        if not isinstance(data, dict):
            return sandbox_error("body", 'a JSON object {"from", "to", "body"}')
        for name in ("from", "body"):
            if not isinstance(data.get(name), str) or not data[name]:
                return sandbox_error(name, "required: a string")
        reply = await self.inbound(data["from"], str(data.get("to") or self.inbound_to), data["body"])
        return web.json_response({"reply": reply})

    async def _healthz(self, _request: web.Request) -> web.Response:
        """`GET /healthz`: the sandbox answers."""
        return web.json_response({"status": "ok"})

    async def inbound(self, from_: str, to: str, body: str) -> str | None:
        """Send Twilio's signed inbound-message webhook; the text of the TwiML <Message> answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        word = " ".join(body.split()).upper()  # Twilio matches a single word, whatever its case
        if word in TWILIO_OPT_OUT_WORDS:
            self.opted_out.add((to, from_))
        elif word in TWILIO_OPT_IN_WORDS:
            self.opted_out.discard((to, from_))
        sid = "SM" + uuid.uuid4().hex
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        async with self._session.post(
            self.inbound_url, data=params, headers=self.signed(self.inbound_url, params)
        ) as response:
            text = await response.text()
        match = re.search(r"<Message>(.*?)</Message>", text, re.S)
        reply = html.unescape(match[1]) if match else None
        if reply and _too_long(reply):  # Twilio sends no such answer (error 21617)
            log.warning("sandbox.reply_refused", to=from_, code=21617, length=len(reply))
        elif reply:
            self.replies.append({"to": from_, "body": reply})
        return reply

    def signed(self, url: str, params: dict[str, str], token: str | None = None) -> dict[str, str]:
        """Headers Twilio would send with a callback of `params` to `url` (the idempotency token is
        the same on every retry of one event)."""
        signature = twilio_signature(self.auth_token.encode(), url, params)
        return {"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": token or str(uuid.uuid4())}

    async def _send_callbacks(self, url: str, message: dict[str, Any]) -> None:
        for status in self.callback_statuses:
            await asyncio.sleep(self.callback_delay)
            message["status"] = status
            if status in self.lost_callbacks.get(message["to"], ()):
                continue
            params = {
                "MessageSid": message["sid"],
                "SmsSid": message["sid"],
                "AccountSid": self.account_sid,
                "From": message["from"] or "",
                "To": message["to"],
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": "2010-04-01",
            }
            headers = self.signed(url, params, token=f"{message['sid']}-{status}") | _FORM
            body = form_body(params) or urlencode(params).encode()
            for attempt in range(3):  # Twilio retries a failed connection once or twice
                try:
                    code = await self._callbacks.post(url, body, headers)
                    self.callbacks_sent += 1
                    if code < 500:
                        break
                except CallbackError as exc:
                    log.warning("sandbox.callback_failed", url=url, error=str(exc), attempt=attempt)
                await asyncio.sleep(0.2 * (attempt + 1))


@functools.lru_cache(maxsize=4)
def _http_date_at(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _http_date() -> str:
    """Now as Twilio writes dates (RFC 2822, to the second)."""
    return _http_date_at(int(time.time()))


async def serve(fake: FakeTwilio, host: str, port: int) -> web.AppRunner:
    """Start serving the fake; returns its runner (call `cleanup()` to stop)."""
    runner, _ = await start(fake.app(), host, port)
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner's first site listens on."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("not listening")
