"""Group commit (shared/batching.py): items share a batch, and an item the writer answers early
does not wait for the rest of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.batching import Answer, GroupCommit


async def test_items_submitted_together_share_one_batch_and_get_each_its_result():
    batches: list[list[str]] = []

    async def write(values: Sequence[str], _: Answer[str]) -> list[str]:
        batches.append(list(values))
        return [v.upper() for v in values]

    commit = GroupCommit[str, str]("test", write)
    assert await asyncio.gather(*(commit.submit(v) for v in "abc")) == ["A", "B", "C"]
    assert batches == [["a", "b", "c"]]


async def test_an_item_answered_early_returns_while_its_batch_is_still_being_written():
    written = asyncio.Event()

    async def write(values: Sequence[str], answer: Answer[str]) -> list[str]:
        answer(0, "nothing to write")
        await written.wait()  # the commit of the others, held by the test
        return ["ignored: answered already", "committed"]

    commit = GroupCommit[str, str]("test", write)
    early = asyncio.create_task(commit.submit("a"))
    late = asyncio.create_task(commit.submit("b"))
    assert await asyncio.wait_for(early, 5) == "nothing to write"
    assert not late.done()
    written.set()
    assert await asyncio.wait_for(late, 5) == "committed"
