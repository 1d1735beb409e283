"""Signed outbound webhooks, sent by the tracker: the events owed to endpoints (recorded by the
database in the transaction of each change, migration 0020) are claimed, POSTed with their
`Campaigns-Signature`, and tried again with exponential backoff until they are taken or too old.

Nothing here is on a campaign's path: the send path only writes the events, so a slow or dead
receiver delays nobody's messages. At least once: a delivery is leased while it is sent and
recorded after the answer; a tracker that dies meanwhile leaves it due again (receivers dedupe on
the event's `id`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from shared import outbound
from shared.db import webhooks as db
from shared.db.listen import Listener
from shared.domain.webhooks import HEADER, disabled_reason, retry_delay, signature
from shared.outbound import OutboundPolicy, OutboundRefused
from shared.settings import Settings

log = structlog.get_logger()

#: Seconds between looks for due deliveries when no NOTIFY wakes the sender (retries come due).
POLL_S = 0.5


class WebhookSender:
    """Claims due deliveries and sends them, `settings.webhook_concurrency` at a time."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, client: aiohttp.ClientSession):
        self._pool = pool
        self._settings = settings
        self._client = client
        self._wake = asyncio.Event()
        self._purged_at = 0.0

    def wake(self, _payload: str | None = None) -> None:
        """A NOTIFY came (or may have been missed): look now."""
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled; a failing round is logged and the loop goes on."""
        while True:
            try:
                sent = await self.send_once()
            except Exception as exc:  # the loop must survive a bad round (the database away…)
                log.warning("webhooks.round_failed", error=repr(exc))
                sent = 0
            if not sent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def send_once(self) -> int:
        """One round: claim what is due and send it; how many were claimed."""
        await self._purge()
        lease = self._settings.webhook_timeout + 30
        rows = await db.claim(self._pool, self._settings.webhook_concurrency, lease)
        await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> None:
        if not row["enabled"]:
            await db.drop(self._pool, row["id"])
            return
        body = json.dumps(row["payload"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "campaigns-webhooks/1",
            HEADER: signature(row["secret"], int(time.time()), body),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout)
            async with self._client.post(
                row["url"], data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                status = response.status
                await response.content.read(64 * 1024)  # what it says is not kept
            if not 200 <= status < 300:
                error = f"answered {status}"
        except (aiohttp.ClientError, TimeoutError, OutboundRefused, OSError) as exc:
            error = str(exc) or type(exc).__name__
        took = int((time.monotonic() - started) * 1000)
        async with self._pool.acquire() as conn, conn.transaction():
            if error is None:
                await db.delivered(conn, row, status or 200, took)
                log.info("webhook.delivered", event_id=row["event_id"], endpoint_id=row["endpoint_id"], status=status)
                return
            now = datetime.now(UTC)
            give_up = now - row["created_at"] > timedelta(seconds=self._settings.webhook_retry_for)
            next_at = now + retry_delay(
                row["attempts"] + 1, self._settings.webhook_retry_base, self._settings.webhook_retry_max
            )
            enabled = await db.failed(
                conn,
                row,
                status,
                error,
                took,
                next_at,
                give_up,
                now - timedelta(seconds=self._settings.webhook_disable_after),
                disabled_reason(self._settings.webhook_disable_after, error),
            )
        log.warning(
            "webhook.failed",
            event_id=row["event_id"],
            endpoint_id=row["endpoint_id"],
            status=status,
            error=error,
            attempts=row["attempts"] + 1,
            gave_up=give_up,
            endpoint_enabled=enabled,
        )

    async def _purge(self) -> None:
        """Age out attempts and ended deliveries (`CAMPAIGNS_RETENTION_DAYS`), once an hour."""
        if time.monotonic() - self._purged_at < self._settings.retention_interval:
            return
        self._purged_at = time.monotonic()
        before = datetime.now(UTC) - timedelta(days=self._settings.retention_days)
        purged = await db.purge(self._pool, before)
        if purged:
            log.info("webhooks.purged", rows=purged)


async def sending(app: web.Application) -> AsyncIterator[None]:
    """The tracker's webhook sender, running while the app does (an aiohttp cleanup context)."""
    settings: Settings = app["settings"]
    async with outbound.session(OutboundPolicy(settings.outbound_allow_networks)) as client:
        sender = WebhookSender(app["pool"], settings, client)
        async with Listener(app["pool"], "webhooks", sender.wake):
            task = asyncio.create_task(sender.run())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
