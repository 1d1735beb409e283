"""LISTEN that outlives its connection: PostgreSQL may drop it (a restart, a failover,
`pg_terminate_backend`); a new one LISTENs again, and waiters are woken meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger()

#: Called with the payload of each NOTIFY, and with None when notifications may have been missed
#: (the connection was lost): a waiter should then look for itself.
OnNotify = Callable[[str | None], None]


class Listener:
    """One pooled connection LISTENing on `channel` while started. Losing it calls `on_notify(None)`
    and LISTENs again from a new connection, every `retry_s` until one holds."""

    def __init__(self, pool: asyncpg.Pool, channel: str, on_notify: OnNotify, retry_s: float = 1.0):
        self._pool = pool
        self._channel = channel
        self._on_notify = on_notify
        self._retry = retry_s
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN holds (or after a few tries, logged:
        it goes on trying). Cancelled meanwhile, it stops what it started."""
        self._task = asyncio.create_task(self._run(), name=f"listen.{self._channel}")
        started = asyncio.create_task(self.listening.wait())
        try:
            await asyncio.wait({self._task, started}, timeout=self._retry * 5, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self.stop()
            raise
        finally:
            started.cancel()

    async def stop(self) -> None:
        """Stop listening and give the connection back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._on_notify(str(payload))

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except Exception as exc:  # listening must outlive any failure: retried below
                log.warning("listen.failed", channel=self._channel, error=repr(exc))
            self.listening.clear()
            self._on_notify(None)  # anything sent while nobody listened is for the waiters to find
            await asyncio.sleep(self._retry)

    async def _listen_once(self) -> None:
        """LISTEN on one connection until PostgreSQL drops it."""
        lost = asyncio.Event()

        def on_lost(_conn: object) -> None:
            lost.set()

        async with self._pool.acquire() as conn:
            conn.add_termination_listener(on_lost)
            try:
                await conn.add_listener(self._channel, self._notified)
                self.listening.set()
                await lost.wait()
                log.warning("listen.lost", channel=self._channel)
            finally:
                if not conn.is_closed():  # a lost connection has already let go of its listeners
                    conn.remove_termination_listener(on_lost)
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(self._channel, self._notified)
