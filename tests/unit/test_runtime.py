"""Running a service: the garbage collector is set up for a long-lived server before it starts."""

from __future__ import annotations

import asyncio
import gc

from shared.runtime import GC_YOUNG_THRESHOLD, run_until_signalled


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
