"""A stand-in SMTP server (aiosmtpd) that accepts mail like a relay, records every message (the
envelope and the parsed message) and answers scripted failures per recipient.

Used by `campaigns up` in sandbox mode and by the tests as their SMTP peer. Failures are scripted at
RCPT: `smtp.script["ann@example.com"] = [(451, "4.2.0 try later")]` answers 451 once, then accepts;
550 is a permanent refusal, 4xx a transient one. What it received can be read back: each message's
log line (`sandbox.email`) names its links and `List-Unsubscribe`, and `GET /sandbox/emails` on the
sandbox's HTTP server lists the latest messages whole (`emails`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import re
import weakref
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import structlog
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.web import error_body

log = structlog.get_logger()

#: A link in a message's text or HTML (a verification link, an unsubscribe page).
_LINK = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
#: Links a summary names at most.
MAX_LINKS = 20
#: Messages `GET /sandbox/emails` lists unless asked for another number, and at most.
DEFAULT_LIST, MAX_LIST = 20, 200


def sandbox_error(field_name: str, reason: str) -> web.Response:
    """A sandbox route's refusal, in the API's one error shape (422, naming the field)."""
    return web.json_response(
        error_body("validation_error", "the request is not valid", [{"field": field_name, "reason": reason}]),
        status=422,
    )


@dataclass(frozen=True)
class ReceivedMail:
    """One message the sandbox accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage

    def header(self, name: str) -> str | None:
        """A header's decoded value (None when absent)."""
        value = self.message[name]
        return None if value is None else str(value)

    def part(self, subtype: str) -> str | None:
        """The text of the `text/<subtype>` part (plain or html), decoded."""
        body = self.message.get_body(preferencelist=(subtype,))
        return None if body is None else str(body.get_content())

    def links(self) -> list[str]:
        """The http(s) links of the text and HTML parts, each once, in order (at most MAX_LINKS)."""
        found = _LINK.findall((self.part("plain") or "") + "\n" + html.unescape(self.part("html") or ""))
        return list(dict.fromkeys(link.rstrip(".,;:!?") for link in found))[:MAX_LINKS]

    def summary(self) -> dict[str, Any]:
        """What the log line says of the message: who, what, and where its links lead."""
        return {
            "mail_from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.header("Subject"),
            "email_message_id": self.header("Message-ID"),
            "list_unsubscribe": self.header("List-Unsubscribe"),
            "list_unsubscribe_post": self.header("List-Unsubscribe-Post"),
            "links": self.links(),
        }

    def as_json(self) -> dict[str, Any]:
        """The message whole, as `GET /sandbox/emails` lists it: its summary, every header (in
        order, repeated ones kept), the text and the HTML."""
        headers = [[name, str(value)] for name, value in self.message.items()]
        return {**self.summary(), "headers": headers, "text": self.part("plain"), "html": self.part("html")}


@dataclass
class SandboxSmtp:
    """The sandbox's state and its aiosmtpd handler hooks (`handle_RCPT`, `handle_DATA`)."""

    #: Recipient (lower case) → answers (SMTP code, text) given at RCPT before accepting normally.
    script: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    #: The messages accepted, oldest first (the latest `keep` of them).
    keep: int = 10_000
    messages: deque[ReceivedMail] = field(default_factory=deque)
    #: Every RCPT answer given (the latest `keep`): (recipient, code).
    rcpt_answers: deque[tuple[str, int]] = field(default_factory=deque)
    #: Seconds each DATA takes (to make concurrency visible).
    response_delay: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0
    host: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        self.messages = deque(self.messages, maxlen=self.keep)
        self.rcpt_answers = deque(self.rcpt_answers, maxlen=self.keep)

    @property
    def env(self) -> dict[str, str]:
        """Settings that point the dispatcher at this server."""
        return {"CAMPAIGNS_SMTP_HOST": self.host, "CAMPAIGNS_SMTP_PORT": str(self.port), "CAMPAIGNS_SMTP_TLS": "none"}

    async def list_emails(self, request: web.Request) -> web.Response:
        """`GET /sandbox/emails?limit=&to=`: the latest messages received (newest first; `limit`
        20 by default, 200 at most; `to` one recipient's), whole. Read-only."""
        raw = request.query.get("limit", str(DEFAULT_LIST))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
            return sandbox_error("limit", f"a number from 1 to {MAX_LIST}")
        to = request.query.get("to")
        mails = self.sent_to(to) if to else list(self.messages)
        return web.json_response({"data": [m.as_json() for m in reversed(mails[-int(raw) :])]})

    def sent_to(self, address: str) -> list[ReceivedMail]:
        """Every message accepted for `address`."""
        address = address.lower()
        return [m for m in list(self.messages) if address in (r.lower() for r in m.rcpt_tos)]

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept the recipient, unless a scripted answer is due."""
        canned = self.script.get(address.lower())
        if canned:
            code, text = canned.pop(0)
            self.rcpt_answers.append((address, code))
            if code >= 400:
                return f"{code} {text}"
        self.rcpt_answers.append((address, 250))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the message."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.response_delay:
                await asyncio.sleep(self.response_delay)
            data = envelope.original_content or b""
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            mail = ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), data, parsed)
            self.messages.append(mail)
            log.info("sandbox.email", **mail.summary())
            return "250 2.0.0 Message accepted for delivery"
        finally:
            self.in_flight -= 1


async def serve(sandbox: SandboxSmtp, host: str, port: int) -> asyncio.Server:
    """Listen on host:port (0: a free port) in the running loop; sets `sandbox.host`/`port`."""
    loop = asyncio.get_running_loop()
    sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()  # open sessions only

    def factory() -> Any:
        session = SMTP(
            sandbox,
            hostname="sandbox.localhost",
            ident="campaigns sandbox SMTP",
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )
        sessions.add(session)
        return session

    server = await loop.create_server(factory, host=host, port=port)
    server.sessions = sessions  # type: ignore[attr-defined]  # closed by `stop`
    sandbox.host, sandbox.port = host, int(server.sockets[0].getsockname()[1])
    return server


async def stop(server: asyncio.Server) -> None:
    """Stop listening and close the sessions still open (pooled clients keep theirs)."""
    server.close()
    for session in getattr(server, "sessions", ()):
        if session.transport is not None:
            session.transport.close()
    await server.wait_closed()


async def run(settings: Any, stop_event: asyncio.Event, sandbox: SandboxSmtp | None = None) -> None:
    """Serve the sandbox SMTP server on CAMPAIGNS_SANDBOX_HOST:CAMPAIGNS_SANDBOX_SMTP_PORT until
    `stop_event` is set (recording into `sandbox`, which the sandbox's HTTP server may list)."""
    sandbox = sandbox if sandbox is not None else SandboxSmtp()
    server = await serve(sandbox, settings.sandbox_host, settings.sandbox_smtp_port)
    log.info("sandbox.smtp_listening", smtp=f"{sandbox.host}:{sandbox.port}")
    try:
        await stop_event.wait()
    finally:
        await stop(server)
