"""Running a service: the garbage collector is set up for a long-lived server before it starts."""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
from typing import IO

from shared.runtime import EXIT_AT_ONCE, GC_YOUNG_THRESHOLD, run_until_signalled
from tests.support import ROOT


async def test_a_service_runs_with_its_start_up_heap_frozen_and_young_collections_spaced_out():
    before = gc.get_threshold()
    seen: dict[str, int] = {}

    async def service(stop: asyncio.Event) -> None:
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()

    try:
        await run_until_signalled(service)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert seen["threshold"] == GC_YOUNG_THRESHOLD
    assert seen["frozen"] > 1000  # the modules loaded by then, at least


_DRAINS_FOREVER = """
import asyncio
from shared.runtime import run_until_signalled

async def service(stop):
    print("ready", flush=True)
    await stop.wait()
    print("draining", flush=True)
    await asyncio.Event().wait()  # a drain that never ends (a provider that does not answer)

asyncio.run(run_until_signalled(service))
"""


def test_a_second_signal_stops_a_draining_service_at_once():
    process = subprocess.Popen(
        [sys.executable, "-c", _DRAINS_FOREVER], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        _read_until(process.stdout, "ready")
        process.send_signal(signal.SIGINT)  # the first: a graceful stop, which here never ends
        _read_until(process.stdout, "draining")
        assert process.poll() is None
        process.send_signal(signal.SIGINT)  # the second: at once
        assert process.wait(timeout=30) == EXIT_AT_ONCE
        assert "service.stopped_at_once" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _read_until(stream: IO[str], line: str) -> None:
    """Read `stream` up to the line `line` (the process's logs may come before it)."""
    for got in stream:
        if got.strip() == line:
            return
    raise AssertionError(f"the process ended before printing {line!r}")
