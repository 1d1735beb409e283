"""PURE: an email that comes back (a bounce report or a reply) → what it says about which message.

Our messages carry a Message-ID made from their delivery id (`<dlv_…@domain>`, see
services/dispatcher/email.py). A bounce (RFC 3464 `multipart/report; report-type=delivery-status`)
quotes the original message or its headers; a reply names it in `In-Reply-To` / `References`.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from typing import Literal

#: Longest reply text kept (the rest of a long reply is cut).
MAX_REPLY = 4000
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_QUOTE_INTRO = re.compile(r"^\s*(On .{0,200}wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+)\s*$", re.I)

Kind = Literal["bounce", "delay", "reply", "other"]


@dataclass(frozen=True)
class InboundEmail:
    """What came back: `kind`, the Message-IDs it is about (ours among them, if it is about one of
    our messages), who sent it, and for a bounce its status and diagnostic, for a reply its text."""

    kind: Kind
    about: list[str] = field(default_factory=list)
    sender: str = ""
    status: str = ""
    diagnostic: str = ""
    text: str = ""
    dedupe_key: str = ""
    #: A reply's own Message-ID, Subject and References (to answer it in the same thread).
    message_id: str = ""
    subject: str = ""
    references: str = ""
    #: A reply's own In-Reply-To (the message it answers).
    in_reply_to: str = ""
    #: A reply's To and Cc addresses (lower case): whose sender it was written to.
    recipients: tuple[str, ...] = ()


def parse(raw: bytes) -> InboundEmail:
    """Read a raw RFC 5322 message (as an inbound-mail webhook or a mailbox hands it over)."""
    message = email.message_from_bytes(raw, policy=policy.default)
    dedupe = str(message.get("Message-ID") or "").strip() or "sha256:" + hashlib.sha256(raw).hexdigest()
    sender = parseaddr(str(message.get("From") or ""))[1].strip().lower()
    if message.get_content_type() == "multipart/report" and message.get_param("report-type") == "delivery-status":
        return _bounce(message, sender, dedupe)
    about = _ids(str(message.get("In-Reply-To") or "")) + _ids(str(message.get("References") or ""))
    if not about:
        return InboundEmail("other", sender=sender, dedupe_key=dedupe)
    return InboundEmail(
        "reply",
        about=about,
        sender=sender,
        text=_reply_text(message),
        dedupe_key=dedupe,
        message_id=" ".join(_ids(str(message.get("Message-ID") or "")))[:998],
        subject=" ".join(str(message.get("Subject") or "").split())[:998],
        references=" ".join(_ids(str(message.get("References") or "")))[:998],
        in_reply_to=" ".join(_ids(str(message.get("In-Reply-To") or "")))[:998],
        recipients=tuple(
            address.strip().lower()
            for _name, address in getaddresses([str(message.get("To") or ""), str(message.get("Cc") or "")])
            if "@" in address
        ),
    )


def thread_of(mail: InboundEmail) -> str:
    """The thread an answer to `mail` continues, before `mail`'s own Message-ID (RFC 5322 §3.6.4):
    the parent's References or, when it has none, its In-Reply-To if that names one message."""
    if mail.references:
        return mail.references
    return mail.in_reply_to if len(_ids(mail.in_reply_to)) == 1 else ""


def _ids(header: str) -> list[str]:
    return _MESSAGE_ID.findall(header)


def _bounce(report: EmailMessage, sender: str, dedupe: str) -> InboundEmail:
    action, status, diagnostic, about = "", "", "", []
    for part in report.iter_parts():
        part_type = part.get_content_type()
        if part_type == "message/delivery-status":
            # The per-message block first, then one block per recipient; the first recipient's counts.
            blocks = part.get_payload()
            recipients = [b for b in blocks[1:] if isinstance(b, Message)] if isinstance(blocks, list) else []
            if recipients:
                action = str(recipients[0].get("Action") or "").strip().lower()
                status = str(recipients[0].get("Status") or "").strip()
                diagnostic = str(recipients[0].get("Diagnostic-Code") or "").strip()
        elif part_type == "message/rfc822":
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(original, Message):
                about += _ids(str(original.get("Message-ID") or ""))
        elif part_type == "text/rfc822-headers":
            headers = email.message_from_string(str(part.get_content()), policy=policy.default)
            about += _ids(str(headers.get("Message-ID") or ""))
    hard = action == "failed" or status.startswith("5.")
    kind: Kind = "bounce" if hard else "delay"
    return InboundEmail(kind, about=about, sender=sender, status=status, diagnostic=diagnostic[:500], dedupe_key=dedupe)


def _reply_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = str(body.get_content())
    if body.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    kept: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(">") or _QUOTE_INTRO.match(line):
            break  # the quoted message we sent starts here
        kept.append(line)
    return "\n".join(kept).strip()[:MAX_REPLY]
