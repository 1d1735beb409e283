"""SMS status callbacks, group-committed: the callbacks that arrive while one batch is written go
into the next (`shared/batching.py`). A batch reads its deliveries, applies each callback in the
order it came by the never-backwards rule (`fold_sms_statuses`), and writes the changed rows in one
statement that checks each is still as read (two round trips, no lock held while Python works).
A callback that changes something is answered once its batch is committed; one about a delivery
the batch does not change (a repeat, a step already recorded such as Twilio's `sent`, an unknown
delivery) as soon as the read says so: what it found is committed already."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from shared.batching import Answer, GroupCommit
from shared.db import tracking
from shared.domain.deliveries import fold_sms_statuses

#: Seconds a callback waits for others to share its batch (each batch costs the database two
#: statements, whatever its size).
LINGER_S = 0.001
#: Reads of a batch's deliveries before it gives up on those that keep moving under it.
MAX_TRIES = 5
#: Seconds a batch that met a passing failure (the database away) is tried again before its
#: callbacks are answered 503 (Twilio gives up on a callback after 15 s).
RETRY_FOR_S = 5.0


@dataclass(frozen=True)
class StatusCallback:
    """One callback: our delivery id (from the callback URL), Twilio's sid, the status, its error."""

    delivery_id: str | None
    sid: str | None
    status: str
    error_code: str | None


class StatusBatcher:
    """Applies status callbacks in batches of up to `max_batch`, two batches at a time."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 500):
        self._pool = pool
        self._batches = GroupCommit[StatusCallback, str](
            "statuses", self._write, max_batch=max_batch, parallel=2, linger_s=LINGER_S, retry_for_s=RETRY_FOR_S
        )

    async def apply(self, callback: StatusCallback) -> str:
        """Apply one callback; once committed, what it did: `applied`, `stale` (it changed
        nothing: a repeat, or a status older than the one recorded) or `unknown_delivery`."""
        return await self._batches.submit(callback)

    async def _write(self, callbacks: Sequence[StatusCallback], answer: Answer[str]) -> list[str]:
        """Read the deliveries (no lock), fold the callbacks onto them, answer those about the
        deliveries that did not change, write what changed in one statement that checks each row is
        still as read; those another writer moved meanwhile are read and folded again."""
        results = [""] * len(callbacks)
        todo = list(range(len(callbacks)))
        for _ in range(MAX_TRIES):
            rows = await tracking.for_statuses(
                self._pool,
                [callbacks[k].delivery_id or "" for k in todo if callbacks[k].delivery_id],
                [callbacks[k].sid or "" for k in todo if callbacks[k].sid and not callbacks[k].delivery_id],
            )
            current = {r["id"]: dict(r) for r in rows}
            by_sid = {r["provider_id"]: r["id"] for r in rows if r["provider_id"]}
            keyed = [
                (c.delivery_id or by_sid.get(c.sid or "") or "", c.sid, c.status, c.error_code)
                for c in (callbacks[k] for k in todo)
            ]
            folded, changed = fold_sms_statuses(current, keyed, datetime.now(UTC))
            for k, (delivery_id, *_), result in zip(todo, keyed, folded, strict=True):
                if delivery_id not in changed:
                    answer(k, result)
            written = await tracking.set_statuses(
                self._pool, [(current[i], {"id": i, **new}) for i, new in changed.items()]
            )
            moved = set(changed) - written
            again = []
            for k, (delivery_id, *_), result in zip(todo, keyed, folded, strict=True):
                if delivery_id in moved:
                    again.append(k)
                else:
                    results[k] = result
            if not again:
                return results
            todo = again
        raise RuntimeError(f"{len(todo)} status callbacks met deliveries that kept moving")
