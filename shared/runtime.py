"""Running a service: until SIGTERM/SIGINT, then a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog

log = structlog.get_logger()

Service = Callable[[asyncio.Event], Awaitable[None]]

#: Allocations between two collections of the youngest generation (CPython's default: 700). A
#: service keeps thousands of short-lived objects per request in flight, and the collector took
#: about 5% of the tracker's CPU. With the start-up heap frozen and this threshold, its CPU a status
#: callback fell about 5% and its p99 from 21-22 to 11-13 ms (benchmarks/README.md, issue 9's
#: sixth session).
GC_YOUNG_THRESHOLD = 10_000


#: Exit code after a second SIGTERM or SIGINT (128 + SIGINT, as a shell reports an interrupted command).
EXIT_AT_ONCE = 130


async def run_until_signalled(service: Service) -> None:
    """Run `service(stop)`; SIGTERM or SIGINT sets `stop`, and the service winds down itself; a
    second one (Ctrl-C again, not waiting for the drain) ends the process at once.
    What is loaded by then (modules, settings) is moved out of the garbage collector's way
    (`gc.freeze`), and the youngest generation is collected every GC_YOUNG_THRESHOLD allocations."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("service.stopping", signal=name, hint="finishing what is under way; a second signal stops at once")
            stop.set()
            return
        # The second: stop at once, as a SIGKILL would (safe anywhere: what was under way is
        # resumed or looked up by whoever starts next).
        log.warning("service.stopped_at_once", signal=name)
        os._exit(EXIT_AT_ONCE)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    await service(stop)


async def cancel_all(tasks: Sequence[asyncio.Task[object]]) -> None:
    """Cancel tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def background(stop: asyncio.Event, *loops: Coroutine[Any, Any, object]) -> AsyncIterator[None]:
    """Run `loops` beside the service's block; they are cancelled when it ends. Each loop logs its
    failing rounds and goes on, so one that ends before `stop` is a fault: it is logged, `stop` is
    set, and the service fails on the way out (exit code 1, for its supervisor to restart it)
    instead of running on half-alive."""
    tasks = [asyncio.create_task(loop, name=getattr(loop, "__qualname__", None)) for loop in loops]
    ended: list[asyncio.Task[object]] = []

    def on_done(task: asyncio.Task[object]) -> None:
        if task.cancelled() or stop.is_set():
            return
        ended.append(task)
        log.error("service.loop_ended", loop=task.get_name(), error=repr(task.exception()))
        stop.set()

    for task in tasks:
        task.add_done_callback(on_done)
    try:
        yield
    finally:
        await cancel_all(tasks)
    if ended:
        raise RuntimeError(f"{ended[0].get_name()} ended before the service stopped") from ended[0].exception()


async def every(interval: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]], name: str) -> None:
    """Run `step` every `interval` seconds until `stop` is set; a failing round is logged, never fatal."""
    while not stop.is_set():
        try:
            await step()
        except Exception as exc:  # the loop must survive a bad round
            log.warning(f"{name}.failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
