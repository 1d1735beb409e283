"""Running a service: until SIGTERM/SIGINT, then a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence

Service = Callable[[asyncio.Event], Awaitable[None]]


async def run_until_signalled(service: Service) -> None:
    """Run `service(stop)`; SIGTERM or SIGINT sets `stop`, and the service winds down itself."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service(stop)


async def cancel_all(tasks: Sequence[asyncio.Task[object]]) -> None:
    """Cancel tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def every(interval: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]], name: str) -> None:
    """Run `step` every `interval` seconds until `stop` is set; a failing round is logged, never fatal."""
    import structlog

    log = structlog.get_logger()
    while not stop.is_set():
        try:
            await step()
        except Exception as exc:  # the loop must survive a bad round
            log.warning(f"{name}.failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
