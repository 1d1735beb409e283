"""Send outcomes, group-committed (`shared/batching.py`): a busy dispatcher records hundreds of
sends per statement, an idle one each at once. `record` returns once its outcome is durable; a
passing failure (the database away) is tried again for as long as it lasts, the outcomes waiting in
memory (a process that dies meanwhile leaves its deliveries `sending`, for the reconciler)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import asyncpg
import structlog

from shared.batching import Answer, GroupCommit
from shared.db import sending
from shared.db.sending import Outcome

log = structlog.get_logger()

#: Seconds an outcome waits for others to share its statement (a statement costs the database
#: about as much as a few dozen rows).
LINGER_S = 0.001
#: Sends slower than this (a moving mean of the provider's answers) are not waited on for company:
#: a slot of a slow provider turns over seldom, its next send waits for the record (a hand-over),
#: and the wait gathers little; sends faster than this keep the dispatcher busy, and the wait saves
#: statements.
SLOW_SEND_S = 0.15
#: Weight of the latest send in the moving mean.
_SMOOTHING = 0.05


class Recorder:
    """Commits outcomes in batches: one statement for the deliveries and their charges (and one for
    opt-outs, when the provider reported any)."""

    def __init__(self, pool: asyncpg.Pool, channel: str, max_batch: int = 1000, linger_s: float = LINGER_S):
        self._pool = pool
        self._channel = channel
        self._linger = linger_s
        self._send_s = 0.0  # the moving mean of the sends' times, as `record` is told them
        self._batches = GroupCommit[tuple[Outcome, str | None], bool](
            f"record.{channel}", self._write, max_batch=max_batch, linger_s=linger_s
        )

    async def record(self, outcome: Outcome, opt_out: str | None = None, took_s: float | None = None) -> bool:
        """Record `outcome` (and opt the contact `opt_out` out of the channel; `took_s`: how long
        the provider took); once committed, whether the outcome's `next_id` was handed over
        (claimed in its place)."""
        if took_s is not None:
            self.pace(took_s)
        return await self._batches.submit((outcome, opt_out))

    @property
    def lingering(self) -> bool:
        """Whether an outcome waits for company before it is written (`LINGER_S`)."""
        return bool(self._batches.linger_s)

    def pace(self, took_s: float) -> None:
        """Count a send's time in the moving mean; wait for company only while sends are faster
        than SLOW_SEND_S (back once the mean is under 80% of it: no flapping at the line)."""
        self._send_s += _SMOOTHING * (took_s - self._send_s)
        slow = self._send_s > (1.0 if self.lingering else 0.8) * SLOW_SEND_S
        linger = 0.0 if slow else self._linger
        if linger != self._batches.linger_s:
            log.info("recorder.linger", channel=self._channel, linger_s=linger, send_s=round(self._send_s, 4))
            self._batches.linger_s = linger

    async def _write(self, batch: Sequence[tuple[Outcome, str | None]], _: Answer[bool]) -> list[bool]:
        outcomes = [outcome for outcome, _ in batch]
        opt_outs = [contact for _, contact in batch if contact]
        try:
            return await self._write_outcomes(outcomes, opt_outs)
        except sending.FundsShort:  # hand-overs ran past the balance: the outcomes alone, then
            return await self._write_outcomes([replace(o, next_id=None) for o in outcomes], opt_outs)

    async def _write_outcomes(self, outcomes: list[Outcome], opt_outs: list[str]) -> list[bool]:
        if not opt_outs:  # one statement: no transaction to open
            handed = await sending.record(self._pool, outcomes)
        else:
            async with self._pool.acquire() as conn, conn.transaction():
                handed = await sending.record(conn, outcomes)
                await sending.opt_out(conn, opt_outs, self._channel)
        return [o.next_id in handed for o in outcomes]
