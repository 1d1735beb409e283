"""Email: each message carries a Message-ID made from its delivery id and a signed one-click
unsubscribe link (RFC 8058). SMTP cannot be asked afterwards whether it took a message, so a
delivery left `sending` (a crash, no answer after DATA) is sent again with the same Message-ID."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import asyncpg
import structlog

from services.dispatcher.decide import Decision
from shared.providers.base import Accepted
from shared.providers.smtp_email import Email, message_id
from shared.unsubscribe import make_token

log = structlog.get_logger()


class EmailProvider(Protocol):
    """Sends one email."""

    async def send_email(self, message: Email) -> Accepted:
        """Hand the message to the relay; Accepted (its Message-ID) or ProviderError."""
        ...


class EmailSender:
    """Email over SMTP; charged per message at the account's email price."""

    channel = "email"

    def __init__(self, provider: EmailProvider, public_url: str, default_from: str, secret_key: bytes):
        self._provider = provider
        self._public_url = public_url.rstrip("/")
        self._default_from = default_from
        self._key = secret_key

    def unsubscribe_url(self, account_id: str, contact_id: str) -> str:
        """The contact's one-click unsubscribe link (served by the tracker)."""
        return f"{self._public_url}/unsubscribe/{make_token(self._key, account_id, contact_id, 'email')}"

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """Send the rendered subject, text and HTML from the campaign's address (or the default)."""
        sender = row["from_number"] if "@" in (row["from_number"] or "") else self._default_from
        return await self._provider.send_email(
            Email(
                sender=sender,
                to=row["to_address"],
                subject=decision.subject or "",
                text=decision.text or "",
                html=decision.html,
                message_id=message_id(row["id"], sender),
                list_unsubscribe=self.unsubscribe_url(row["account_id"], row["contact_id"]),
            )
        )

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal:
        """The email price, per message."""
        return row["price_email"]  # type: ignore[no-any-return]
