"""Email over SMTP (aiosmtplib) to any relay: a small pool of connections, since aiosmtplib runs
one mail transaction at a time per connection; a dropped idle connection is reopened once."""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any, Literal

import aiosmtplib
import structlog

from shared.domain.retry import Verdict
from shared.providers.base import Accepted, ProviderError
from shared.settings import Settings, smtp_address

log = structlog.get_logger()

TlsMode = Literal["none", "starttls", "tls"]
#: Headers written on one line whatever their length: folding them has broken DKIM on some relays.
_UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class _Policy(EmailPolicy):
    """SMTP's policy (CRLF, 7-bit safe), except that the List-Unsubscribe headers are never folded."""

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}"
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return bytes(super().fold_binary(name, value))


#: Bodies are encoded 7-bit safe (quoted-printable/base64), so any relay takes them without 8BITMIME.
_BUILD = email.policy.default.clone(cte_type="7bit")
_WIRE = _Policy(linesep="\r\n", cte_type="7bit")


def message_id(local: str, sender: str) -> str:
    """`<local@sender's domain>`; for a campaign's message `local` is its delivery id, the same on
    every attempt, so a resend is recognisably one message (and a reply or bounce names it)."""
    domain = sender.rpartition("@")[2] or "campaigns.localhost"
    return f"<{local}@{domain}>"


@dataclass(frozen=True)
class Email:
    """One message to one recipient."""

    sender: str
    to: str
    subject: str
    text: str
    html: str | None
    message_id: str
    #: The one-click unsubscribe URL (None: a message to no contact, e.g. a sender's verification).
    list_unsubscribe: str | None
    #: For an answer: the Message-ID it answers, and the thread's References.
    in_reply_to: str | None = None
    references: str | None = None

    def build(self) -> EmailMessage:
        """The MIME message: text, with the HTML as an alternative when there is one."""
        message = EmailMessage(policy=_BUILD)
        message["From"] = self.sender
        message["To"] = self.to
        message["Subject"] = " ".join(self.subject.split())  # no CR/LF from a template: header injection
        message["Message-ID"] = self.message_id
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        message["MIME-Version"] = "1.0"
        if self.list_unsubscribe:
            message["List-Unsubscribe"] = f"<{self.list_unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if self.in_reply_to:
            message["In-Reply-To"] = self.in_reply_to
            message["References"] = " ".join(filter(None, (self.references, self.in_reply_to)))
        if self.text.strip() or not self.html:
            message.set_content(self.text)
            if self.html:
                message.add_alternative(self.html, subtype="html")
        else:
            message.set_content(self.html, subtype="html")
        return message


def flatten(message: EmailMessage, utf8: bool = False) -> bytes:
    """The message as sent after DATA (CRLF line ends, List-Unsubscribe unfolded)."""
    policy = _WIRE.clone(utf8=True) if utf8 else _WIRE
    return message.as_bytes(policy=policy)


def classify_smtp(code: int | None) -> Verdict:
    """5xx: the server refuses for good; 4xx or no answer at all (None): try again later."""
    return "fail" if code is not None and 500 <= code < 600 else "retry"


class SmtpEmail:
    """`EmailProvider` over SMTP: at most `pool_size` connections, each reused for many messages."""

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        username: str | None,
        password: str | None,
        tls: TlsMode | None,
        timeout: float,
        pool_size: int = 4,
        local_hostname: str = "campaigns.localhost",
    ):
        self._options: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "username": username,
            "password": password,
            "timeout": timeout,
            "local_hostname": local_hostname,
            # None: STARTTLS when the server offers it (aiosmtplib's default).
            "use_tls": tls == "tls",
            "start_tls": {None: None, "none": False, "starttls": True, "tls": False}[tls],
        }
        self._timeout = timeout
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def close(self) -> None:
        """QUIT every idle connection."""
        idle, self._idle = self._idle, []
        for smtp in idle:
            await _close(smtp, polite=True)

    async def send_email(self, message: Email) -> Accepted:
        """One mail transaction, bounded by the timeout; ProviderError sorted into retry or fail
        (`unknown` when the server may have taken the message: no answer after the data was sent)."""
        built = message.build()
        stage: list[str] = ["envelope"]
        try:
            async with self._slots, asyncio.timeout(self._timeout):
                await self._transaction(message, built, stage)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code, text = (refused.code, refused.message) if refused else (None, str(exc))
            raise ProviderError(f"smtp {code}: {text}", classify_smtp(code), code) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not this recipient: retry, so an operator can mend the settings.
            raise ProviderError(f"smtp authentication failed ({exc.code}): {exc.message}", "retry", exc.code) from exc
        except aiosmtplib.SMTPConnectError as exc:
            # The server, not this recipient (a 421/554 greeting, a refused connection): nothing was sent.
            raise ProviderError(f"smtp connection failed: {exc}", "retry", getattr(exc, "code", None)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise ProviderError(f"smtp {exc.code}: {exc.message}", classify_smtp(exc.code), exc.code) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise ProviderError(f"smtp: {exc}", "fail") from exc
        except ValueError as exc:  # an address aiosmtplib refuses to write (control characters)
            raise ProviderError(f"smtp: {exc}", "fail") from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            after_data = stage[0] == "data"
            what = "did not answer after the message was sent" if after_data else f"failed: {exc!r}"
            raise ProviderError(f"smtp {what}", "retry", unknown=after_data) from exc
        return Accepted(provider_id=message.message_id, status="accepted")

    async def _transaction(self, message: Email, built: EmailMessage, stage: list[str]) -> None:
        smtp, reused = await self._checkout()
        try:
            try:
                await self._send(smtp, message, built, stage)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPResponseException) as exc:
                closed = isinstance(exc, aiosmtplib.SMTPServerDisconnected) or exc.code == 421
                if stage[0] != "envelope" or not closed or not reused:
                    raise
                # An idle connection the server had closed (or was closing): nothing was sent; once
                # more on a new one.
                await _close(smtp)
                smtp = await self._connect()
                await self._send(smtp, message, built, stage)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            await self._reset(smtp)
            raise
        except BaseException:
            await _close(smtp)  # mid-command (timeout, cancel, I/O): its state is unknown
            raise
        self._idle.append(smtp)

    async def _send(self, smtp: aiosmtplib.SMTP, message: Email, built: EmailMessage, stage: list[str]) -> None:
        addresses = message.sender + message.to
        utf8 = not addresses.isascii()
        options = []
        if utf8:
            if not smtp.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("a non-ASCII address, and the server lacks SMTPUTF8")
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        data = flatten(built, utf8)
        await smtp.mail(message.sender, options=options, encoding=encoding)
        try:
            await smtp.rcpt(message.to, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise aiosmtplib.SMTPRecipientsRefused([exc]) from exc
        stage[0] = "data"
        await smtp.data(data)
        stage[0] = "done"

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connection, and whether it was open before (and so may have gone stale)."""
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
            await _close(smtp)
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(**self._options)
        await smtp.connect()
        return smtp

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """After a refusal: RSET and keep the connection, or drop it if that fails."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await _close(smtp)
            return
        self._idle.append(smtp)


async def _close(smtp: aiosmtplib.SMTP, polite: bool = False) -> None:
    if polite and smtp.is_connected:
        try:
            async with asyncio.timeout(2):
                await smtp.quit()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
    smtp.close()


def from_settings(settings: Settings, pool_size: int | None = None) -> SmtpEmail:
    """The SMTP relay the settings name (the sandbox's in sandbox mode when no host is set)."""
    host, port = smtp_address(settings)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpEmail(
        host,
        port,
        username=settings.smtp_username,
        password=password,
        tls=settings.smtp_tls,
        timeout=settings.provider_timeout,
        pool_size=pool_size or settings.smtp_pool_size,
    )
