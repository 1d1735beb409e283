"""Email: each message carries a Message-ID made from its delivery id and a signed one-click
unsubscribe link (RFC 8058). SMTP cannot be asked afterwards whether it took a message, so a
delivery left `sending` (a crash, no answer after DATA) is sent again with the same Message-ID."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

import asyncpg
import structlog

from services.dispatcher.decide import Decision
from shared.db import sending
from shared.domain.retry import next_attempt
from shared.providers.base import Accepted
from shared.providers.smtp_email import Email, message_id
from shared.runtime import every
from shared.unsubscribe import make_token

log = structlog.get_logger()

_ACCOUNT = "SELECT account_id FROM campaigns WHERE id = $1"


class EmailProvider(Protocol):
    """Sends one email."""

    async def send_email(self, message: Email) -> Accepted:
        """Hand the message to the relay; Accepted (its Message-ID) or ProviderError."""
        ...


class EmailSender:
    """Email over SMTP; charged per message at the account's email price."""

    channel = "email"
    holds_slot = False
    lease_s: float | None = None

    def __init__(
        self, provider: EmailProvider, pool: asyncpg.Pool, public_url: str, default_from: str, secret_key: bytes
    ):
        self._provider = provider
        self._pool = pool
        self._public_url = public_url.rstrip("/")
        self._default_from = default_from
        self._key = secret_key
        self._accounts: dict[str, str] = {}

    async def _account_of(self, campaign_id: str) -> str:
        account = self._accounts.get(campaign_id)
        if account is None:
            if len(self._accounts) > 10_000:
                self._accounts.clear()
            account = self._accounts[campaign_id] = await self._pool.fetchval(_ACCOUNT, campaign_id)
        return account

    def unsubscribe_url(self, account_id: str, contact_id: str) -> str:
        """The contact's one-click unsubscribe link (served by the tracker)."""
        return f"{self._public_url}/unsubscribe/{make_token(self._key, account_id, contact_id, 'email')}"

    async def send(self, row: asyncpg.Record, decision: Decision) -> Accepted:
        """Send the rendered subject, text and HTML from the campaign's address (or the default)."""
        sender = row["from_number"] if "@" in (row["from_number"] or "") else self._default_from
        account_id = await self._account_of(row["campaign_id"])
        return await self._provider.send_email(
            Email(
                sender=sender,
                to=row["to_address"],
                subject=decision.subject or "",
                text=decision.text or "",
                html=decision.html,
                message_id=message_id(row["id"], sender),
                list_unsubscribe=self.unsubscribe_url(account_id, row["contact_id"]),
            )
        )

    def cost(self, row: asyncpg.Record, decision: Decision) -> Decimal:
        """The email price, per message."""
        return row["price_email"]  # type: ignore[no-any-return]


class EmailReconciler:
    """Deliveries left `sending` longer than any send may take: sent again now (same Message-ID)
    while retries remain, else failed. SMTP has no lookup, so this favours never dropping one."""

    def __init__(self, pool: asyncpg.Pool, after_s: float, interval_s: float):
        self._pool = pool
        self._after = after_s
        self._interval = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval_s` until `stop` is set."""
        await every(self._interval, stop, self.reconcile_once, "reconcile.email")

    async def reconcile_once(self) -> int:
        """One round; how many deliveries it resolved."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await sending.stuck(conn, "email", self._after)
            for row in rows:
                now = datetime.now(UTC)
                step = next_attempt(row["attempts"], row["max_retries"], row["retry_interval"], now, "retry")
                if step.at is None:
                    await sending.finish(conn, row["id"], "failed", "smtp outcome unknown and retries exhausted")
                else:
                    await sending.schedule_retry(conn, row["id"], now, "smtp outcome unknown; sent again")
                log.info("reconcile.email_unknown", delivery_id=row["id"], retry=step.at is not None)
        return len(rows)
