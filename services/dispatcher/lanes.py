"""The deliveries a dispatcher holds, one lane per campaign: claimed within the campaign's room
(`max_concurrent` less what every replica has in flight) and this process's capacity, sent, and
recorded in batches. A lane that has no room waits for a NOTIFY saying some came free (migration
0022's trigger sends one when a campaign's in-flight count goes down), so one campaign's
limit or a slow provider never holds another campaign's sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from services.dispatcher.decide import Decision, decide
from services.dispatcher.recorder import Recorder
from services.dispatcher.senders import Sender
from shared.bus import outbox
from shared.db import balance, sending
from shared.db.listen import Listener
from shared.db.sending import Outcome
from shared.domain.retry import next_attempt
from shared.messages.campaign_events import CampaignPaused
from shared.providers.base import ProviderError

log = structlog.get_logger()

OUTCOMES = Counter("campaigns_dispatch_total", "Dispatch outcomes", ["channel", "outcome"])
IN_FLIGHT = Gauge("campaigns_dispatch_in_flight", "Provider requests this dispatcher has under way", ["channel"])
HELD = Gauge("campaigns_dispatch_held", "Deliveries this dispatcher holds, not yet claimed", ["channel"])
CLAIMS = Counter(
    "campaigns_dispatch_claims_total",
    "Claim statements, by whether they found room (claimed) or not (no_room)",
    ["channel", "result"],
)

#: NOTIFY channel on which a campaign with room again (its in-flight count down) is named
#: (migration 0022: by its `campaign_flow` row; the releaser's `flow` also names campaigns whose
#: queue merely got shorter).
FLOW_CHANNEL = "room"
#: Seconds a woken lane waits before it claims, so that room freed by several commits at once is
#: claimed in one statement.
CLAIM_LINGER_S = 0.0
#: How far into a lane a send looks for the delivery to hand its place to (the decided ones come
#: first: a lane decides its deliveries in order).
FOLLOWING_LOOKS = 16
#: A campaign's first round in this process decides (renders) only this many of its deliveries, so
#: that its first sends start at once; the next round, right after, takes the rest of its share.
FIRST_ROUND = 4
#: Campaigns remembered as having started here (the oldest forgotten first).
REMEMBERED = 4096
#: Campaign states whose deliveries are sent.
_LIVE = ("scheduled", "running")
#: What a decision that is not a send leaves the delivery as.
_SETTLED_AS = {"pause": "planned", "cancel": "cancelled", "skip": "skipped", "fail": "failed"}


@dataclass
class _Held:
    """A delivery from a command not yet acknowledged, until it is claimed and recorded, or needs
    nothing more from this dispatcher."""

    id: str
    done: asyncio.Future[None]
    row: asyncpg.Record | None = None
    decision: Decision | None = None
    #: What sending it costs (held by its claim), worked out once per decision.
    cost: Decimal | None = None


@dataclass
class _Lane:
    campaign_id: str
    held: dict[str, _Held] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: The last round could not claim for want of this process's capacity.
    starved: bool = False
    #: The campaign's sender is paced (`max_per_second`): each send waits for its slot, taken by a
    #: claim; none is handed over.
    paced: bool = False
    #: Wakes the lane when its sender's next slot starts.
    timer: asyncio.TimerHandle | None = None


class Lanes:
    """Holds the deliveries of every command under way; `submit` returns once each of a command's
    deliveries needs nothing more from this dispatcher (sent and recorded, settled, or another's)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        recorder: Recorder,
        *,
        capacity: int,
        poll_s: float = 0.5,
        clock: Any = None,
        rates: sending.SenderRates | None = None,
    ):
        self._pool = pool
        self._sender = sender
        self._channel = sender.channel
        self._recorder = recorder
        self._capacity = max(1, capacity)
        self._poll = poll_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rates = rates or sending.SenderRates()
        self._lanes: dict[str, _Lane] = {}
        #: Campaigns this process has claimed for (their rounds need no quick first one).
        self._started: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0
        # read when /metrics is: what the lanes hold now, whatever took it (a claim, a skip, a cancel)
        HELD.labels(self._channel).set_function(lambda: sum(len(lane.held) for lane in self._lanes.values()))
        self._sends: set[asyncio.Task[None]] = set()
        self._listener = Listener(pool, FLOW_CHANNEL, self._on_flow)

    async def __aenter__(self) -> Lanes:
        """Listen for campaigns with room while in the block."""
        await self._listener.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._listener.stop()
        for lane in list(self._lanes.values()):
            if lane.task is not None:
                lane.task.cancel()
        if self._sends:
            await asyncio.wait(self._sends, timeout=30)

    def _on_flow(self, campaign_id: str | None) -> None:
        if campaign_id is None:  # the LISTEN connection was lost: room may have come meanwhile
            for lane in self._lanes.values():
                lane.wake.set()
        elif (found := self._lanes.get(campaign_id)) is not None:
            found.wake.set()

    async def submit(self, campaign_id: str, delivery_ids: list[str]) -> None:
        """Take a command's deliveries; returns when none needs anything more from us."""
        lane = self._lanes.get(campaign_id)
        if lane is None:
            lane = self._lanes[campaign_id] = _Lane(campaign_id)
        waits = []
        for delivery_id in dict.fromkeys(delivery_ids):
            held = lane.held.get(delivery_id)
            if held is None:  # (the same delivery twice: a redelivered command meets the first)
                held = lane.held[delivery_id] = _Held(delivery_id, asyncio.get_running_loop().create_future())
            waits.append(held.done)
        lane.wake.set()
        if lane.task is None:
            lane.task = asyncio.create_task(self._run(lane), name=f"lane.{campaign_id}")
        # (asyncio.wait: a cancelled command, the consumer stopping, must not cancel the deliveries)
        await asyncio.wait(waits)
        for done in waits:
            if not done.cancelled() and done.exception() is not None:
                raise cast(BaseException, done.exception())

    async def _run(self, lane: _Lane) -> None:
        try:
            while lane.held:
                lane.wake.clear()
                try:
                    progressed = await self._round(lane)
                except Exception as exc:  # the database away, say: the lane tries again
                    log.warning("dispatch.round_failed", campaign_id=lane.campaign_id, error=repr(exc))
                    progressed = False
                if not progressed and lane.held:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wake.wait(), self._poll)
                    # room comes free a few sends at a time: a moment more gathers it into one claim
                    await asyncio.sleep(CLAIM_LINGER_S)
        finally:
            lane.task = None
            if not lane.held and self._lanes.get(lane.campaign_id) is lane:
                del self._lanes[lane.campaign_id]
            elif lane.held:  # cancelled with deliveries held: their commands are redelivered
                for held in lane.held.values():
                    if not held.done.done():
                        held.done.cancel()

    def _share(self) -> int:
        """How many sends one lane may start now: this process's free capacity, split evenly
        among the lanes that have work."""
        free = self._capacity - self._in_flight
        if free <= 0:
            return 0
        busy = sum(1 for lane in self._lanes.values() if lane.held) or 1
        return max(1, math.ceil(free / busy))

    async def _round(self, lane: _Lane) -> bool:
        """Claim what the campaign's room and our capacity allow, settle what is not to be sent,
        start the sends. Whether anything moved.

        The deliveries a round works on are taken out of the lane while it awaits the database, so
        that a finished send never hands its place to one of them meanwhile; those it neither sent
        nor settled go back to the front of the lane."""
        share = self._share()
        window = list(lane.held.values())[: max(2 * share, 50) if lane.campaign_id in self._started else FIRST_ROUND]
        await self._prepare(window)
        window = [h for h in window if lane.held.get(h.id) is h]  # (a hand-over took some meanwhile)
        finished = [h for h in window if h.decision is not None and h.decision.action == "duplicate"]
        sendable = [h for h in window if h.decision is not None and h.decision.action == "send"]
        settled = [h for h in window if h.decision is not None and h.decision.action in _SETTLED_AS]
        for held in finished:
            self._finish(lane, held)
        for held in (*sendable, *settled):
            del lane.held[held.id]
        verdicts = [(h.id, _SETTLED_AS[h.decision.action], h.decision.reason) for h in settled if h.decision]
        try:
            claim = sending.Claim("running", 0, [])
            if sendable:
                claim = await self._claim(lane, sendable, share)
            if claim.status not in _LIVE:
                # paused: back to planned, to be released on resume; ended (or gone): cancelled
                status = claim.status or "gone"
                state, reason = ("planned", None) if status == "paused" else ("cancelled", f"campaign {status}")
                verdicts += [(h.id, state, reason) for h in sendable]
                settled, sendable = [*settled, *sendable], []
            await sending.settle(self._pool, verdicts)
        except BaseException:
            self._hold_at_front(lane, [*sendable, *settled])
            raise
        grant = min(len(sendable), share, claim.free)
        claimed = set(claim.claimed)
        lane.starved = bool(sendable) and share < min(len(sendable), claim.free)
        for held, (_, state, _reason) in zip(settled, verdicts, strict=True):
            OUTCOMES.labels(self._channel, "not_sent" if state != "planned" else "paused").inc()
            self._finish(lane, held)
        for held in sendable:
            if held.id in claimed:
                self._start(lane, held)
        unclaimed = [h for h in sendable if h.id not in claimed]
        self._hold_at_front(lane, unclaimed)
        lane.paced = claim.rate_wait is not None
        if claimed and lane.campaign_id not in self._started:
            self._started[lane.campaign_id] = None
            if len(self._started) > REMEMBERED:
                self._started.popitem(last=False)
        if unclaimed and claim.rate_wait is not None:  # its sender's next slot: wake the lane then
            self._wake_at(lane, max(claim.rate_wait, 0.0))
        if grant and len(claimed) < grant:
            await self._drop_unclaimable(lane, unclaimed)
        return bool(claimed or verdicts or finished)

    async def _claim(self, lane: _Lane, sendable: list[_Held], share: int) -> sending.Claim:
        """Claim what the campaign's room, our share and its money allow, each send's cost held. A
        campaign whose money cannot cover its next send, with none of its sends in flight, is paused,
        saying so (its deliveries then go back to planned, as a person's pause does)."""
        texts = [(h.decision.text if h.decision else None) or "" for h in sendable]
        costs = [self._cost(h) for h in sendable]
        addresses = [h.row["to_address"] if h.row else "" for h in sendable]
        try:
            claim = await sending.claim(
                self._pool, lane.campaign_id, [h.id for h in sendable], texts, costs, addresses, share, self._rates
            )
        except sending.FundsShort:  # another claim of the account took the money meanwhile: look again
            lane.wake.set()
            return sending.Claim("running", 0, [])
        CLAIMS.labels(self._channel, "claimed" if claim.claimed else "no_room").inc()
        # Out of money once nothing is in flight: a send under way that fails gives its cost back
        # (its end wakes this lane, as any send's end does), so a campaign never pauses for money
        # the failures of its last sends are about to return.
        short = claim.needed is not None
        if short and not claim.claimed and not claim.in_flight and claim.free > 0 and claim.status in _LIVE:
            reason = {"code": "balance", "needed": f"{claim.needed:.4f}", "available": f"{claim.funds or 0:.4f}"}
            async with self._pool.acquire() as conn, conn.transaction():
                paused = await balance.pause_short(conn, lane.campaign_id, reason)
                if paused is not None:
                    await outbox.add(conn, [CampaignPaused(account_id=paused["account_id"], campaign_id=paused["id"])])
            if paused is not None:
                log.warning("campaign.balance_short", campaign_id=lane.campaign_id, **reason)
                return dataclasses.replace(claim, status="paused")
        return claim

    def _cost(self, held: _Held) -> Decimal:
        """What sending `held` costs (held as it is claimed), worked out once for its decision."""
        if held.cost is None:
            assert held.row is not None
            assert held.decision is not None
            held.cost = self._sender.cost(held.row, held.decision)
        return held.cost

    @staticmethod
    def _wake_at(lane: _Lane, delay_s: float) -> None:
        """Wake the lane in `delay_s` seconds (when its sender's next slot starts), not spinning on
        the database meanwhile; its deliveries hold no place in `max_concurrent` while they wait."""
        if lane.timer is not None:
            lane.timer.cancel()
        lane.timer = asyncio.get_running_loop().call_later(delay_s, lane.wake.set)

    def _hold_at_front(self, lane: _Lane, held: list[_Held]) -> None:
        """Put deliveries a round took back at the front of their lane, in order."""
        if held:
            lane.held = {h.id: h for h in held} | lane.held

    async def _prepare(self, window: list[_Held]) -> None:
        """Load and decide the deliveries not decided yet (their text rendered once)."""
        todo = [h for h in window if h.decision is None]
        if not todo:
            return
        rows = {r["id"]: r for r in await sending.load(self._pool, [h.id for h in todo])}
        for held in todo:
            row = rows.get(held.id)
            held.row = row
            held.decision = decide(row) if row is not None else Decision("duplicate", reason="no such delivery")
            held.cost = None

    async def _drop_unclaimable(self, lane: _Lane, unclaimed: list[_Held]) -> None:
        """Of the sendable deliveries a claim passed over, let go of those no longer `queued`
        (another replica has them, or they were settled); a contact who opted out meanwhile gets
        its delivery skipped at the next round; one locked by another claim stays held."""
        found = await sending.states(self._pool, [h.id for h in unclaimed])
        for held in unclaimed:
            if lane.held.get(held.id) is not held:
                continue  # handed over meanwhile
            if found.get(held.id) != "queued":
                self._finish(lane, held)
            else:
                held.decision = None  # decided again next round (an opt-out is then a skip)

    def _finish(self, lane: _Lane, held: _Held) -> None:
        lane.held.pop(held.id, None)
        if not held.done.done():
            held.done.set_result(None)

    def _start(self, lane: _Lane, held: _Held) -> None:
        self._in_flight += 1
        IN_FLIGHT.labels(self._channel).set(self._in_flight)
        self._launch(lane, held)

    def _launch(self, lane: _Lane, held: _Held) -> None:
        """Send a claimed delivery (its capacity already counted)."""
        task = asyncio.create_task(self._send(lane, held))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, lane: _Lane, held: _Held) -> None:
        row, decision = held.row, held.decision
        assert row is not None
        assert decision is not None
        opt_out = None
        started = time.monotonic()
        try:
            accepted = await self._sender.send(row, decision)
        except ProviderError as exc:
            outcome = self._failure(row, exc)
            opt_out = row["contact_id"] if exc.verdict == "opt_out" else None
        except Exception:  # a bug in a sender: whether the provider took it is unknown
            log.exception("delivery.send_failed", delivery_id=row["id"])
            OUTCOMES.labels(self._channel, "unknown").inc()
            outcome = None  # left `sending`: the reconciler asks the provider
        else:
            outcome = Outcome(row["id"], "sent", accepted.provider_id, accepted.status, self._cost(held))
            OUTCOMES.labels(self._channel, "sent").inc()
        # the next delivery of this lane takes this one's place, claimed with its record (one
        # statement: the campaign's in-flight count does not move, and no claim round is waited for)
        following = self._following(lane) if outcome is not None else None
        if following is None:
            self._done_sending()
        elif outcome is not None and following.decision is not None:
            outcome = dataclasses.replace(
                outcome,
                next_id=following.id,
                next_rendered=following.decision.text or "",
                next_cost=self._cost(following),
                next_address=following.row["to_address"] if following.row else None,
            )
        try:
            if outcome is not None:
                handed = await self._recorder.record(outcome, opt_out, time.monotonic() - started)
                if following is not None and handed:
                    self._launch(lane, following)  # (its place taken: no room came free, no round to wake)
                else:
                    if following is not None:  # the campaign paused, the contact opted out, another replica has it…
                        self._hold_again(following.id, lane.campaign_id, following)
                        self._done_sending()
                    lane.wake.set()  # room is free now (committed): no need to wait for the NOTIFY
        except Exception as exc:
            if following is not None:
                self._hold_again(following.id, lane.campaign_id, following)
                self._done_sending()
            if not held.done.done():
                held.done.set_exception(exc)
            return
        if not held.done.done():
            held.done.set_result(None)

    def _following(self, lane: _Lane) -> _Held | None:
        """The first delivery of the lane decided to be sent, taken out of it (to be handed over);
        none for a paced sender (its sends start at their slots, taken by claims)."""
        if lane.paced:
            return None
        for candidate in itertools.islice(lane.held.values(), FOLLOWING_LOOKS):
            if candidate.decision is not None and candidate.decision.action == "send":
                return lane.held.pop(candidate.id)
        return None

    def _hold_again(self, delivery_id: str, campaign_id: str, held: _Held) -> None:
        """Give a delivery that was not handed over back to its campaign's lane (running again if
        it ended meanwhile), for a claim round to decide."""
        lane = self._lanes.get(campaign_id)
        if lane is None:
            lane = self._lanes[campaign_id] = _Lane(campaign_id)
        held.decision = None  # decided again: the campaign or the contact may have changed
        lane.held[delivery_id] = held
        lane.wake.set()
        if lane.task is None:
            lane.task = asyncio.create_task(self._run(lane), name=f"lane.{campaign_id}")

    def _done_sending(self) -> None:
        """One provider request of this process fewer: lanes that wanted capacity may go on."""
        self._in_flight -= 1
        IN_FLIGHT.labels(self._channel).set(self._in_flight)
        for other in self._lanes.values():
            if other.starved:
                other.wake.set()

    def _failure(self, row: asyncpg.Record, exc: ProviderError) -> Outcome | None:
        """What a refused or unanswered send becomes: None (outcome unknown: left `sending` for the
        reconciler, never sent again blindly), a retry later, or a failure."""
        if exc.unknown:
            log.warning("delivery.outcome_unknown", delivery_id=row["id"], error=str(exc))
            OUTCOMES.labels(self._channel, "unknown").inc()
            return None
        step = next_attempt(row["attempts"] + 1, row["max_retries"], row["retry_interval"], self._clock(), exc.verdict)
        if step.at is None:
            OUTCOMES.labels(self._channel, "failed").inc()
            log.info("delivery.failed", delivery_id=row["id"], error=str(exc), reason=step.reason)
            return Outcome(row["id"], "failed", error=str(exc))
        OUTCOMES.labels(self._channel, "retry").inc()
        log.info("delivery.retry", delivery_id=row["id"], error=str(exc), at=step.at.isoformat(), reason=step.reason)
        return Outcome(row["id"], "retry", retry_at=step.at, error=str(exc))
