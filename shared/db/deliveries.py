"""Deliveries: bulk planning (COPY), release of due rows (SKIP LOCKED), and their state changes.

A delivery only moves forward: planned → queued → sending → sent → delivered, or to failed,
cancelled or skipped; a retry sends it back to planned with a later `send_at`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from shared.db.connection import Connection, Executor

#: Columns written when a run is planned, in COPY order.
PLAN_COLUMNS = (
    "id",
    "run_id",
    "campaign_id",
    "account_id",
    "contact_id",
    "channel",
    "to_address",
    "state",
    "send_at",
    "plan_reason",
    "error",
)

_RECIPIENTS = """
SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.company, c.timezone, c.metadata,
       c.opted_out_sms, c.opted_out_email, c.opted_out_voice
FROM contacts c
WHERE c.account_id = $1 AND c.id IN (
    SELECT contact_id FROM campaign_recipients WHERE campaign_id = $2
    UNION
    SELECT m.contact_id FROM group_members m JOIN contact_groups g ON g.id = m.group_id
    WHERE g.account_id = $1 AND g.id = ANY($3::text[])
)
"""
#: The next `limit` recipients after contact id `after`, in id order (a keyset chunk: each source
#: gives at most `limit` ids past the cursor, so a chunk reads a bounded slice of each).
_RECIPIENTS_AFTER = """
SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.company, c.timezone, c.metadata,
       c.opted_out_sms, c.opted_out_email, c.opted_out_voice
FROM contacts c
WHERE c.account_id = $1 AND c.id > $4 AND c.id IN (
    (SELECT r.contact_id FROM campaign_recipients r
     WHERE r.campaign_id = $2 AND r.contact_id > $4 ORDER BY r.contact_id LIMIT $5)
    UNION
    (SELECT m.contact_id FROM contact_groups g
     CROSS JOIN LATERAL (SELECT m.contact_id FROM group_members m
                         WHERE m.group_id = g.id AND m.contact_id > $4 ORDER BY m.contact_id LIMIT $5) AS m
     WHERE g.account_id = $1 AND g.id = ANY($3::text[]))
)
ORDER BY c.id
LIMIT $5
"""
_INSERT_RUN = """
INSERT INTO runs (id, campaign_id, account_id, seq, status, occurs_at, occurs_wall, planned_through)
VALUES ($1, $2, $3, $4, 'planning', $5, $6, '') ON CONFLICT (campaign_id, seq) DO NOTHING RETURNING id
"""
_INSERT_PENDING_RUN = """
INSERT INTO runs (id, campaign_id, account_id, seq, status, occurs_wall, plan_at, occurs_at)
VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) ON CONFLICT (campaign_id, seq) DO NOTHING
"""
_FIRST_WALL = "SELECT occurs_wall FROM runs WHERE campaign_id = $1 AND seq = 1"
_DUE_RUNS = """
SELECT r.id, r.campaign_id, r.seq, r.occurs_wall FROM runs r
WHERE r.status = 'pending' AND r.plan_at <= $1
  AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = r.campaign_id AND c.status IN ('scheduled', 'running'))
ORDER BY r.plan_at LIMIT $2
FOR UPDATE OF r SKIP LOCKED
"""
_START_RUN = "UPDATE runs SET status = 'planning', planned_through = '' WHERE id = $1"
#: A run being planned, locked while one chunk of it is planned (another scheduler skips it).
_NEXT_WALL = "(SELECT n.occurs_wall FROM runs n WHERE n.campaign_id = r.campaign_id AND n.seq = r.seq + 1)"
_PLANNING = f"""
SELECT r.id, r.campaign_id, r.account_id, r.seq, r.occurs_wall, {_NEXT_WALL} AS next_wall, r.planned_through
FROM runs r WHERE r.status = 'planning' AND ($1::text IS NULL OR r.id = $1)
ORDER BY r.created_at LIMIT 1
FOR UPDATE OF r SKIP LOCKED
"""  # noqa: S608 (constants)
_PLANNED_THROUGH = "UPDATE runs SET planned_through = $2 WHERE id = $1"
_PLANNED = "UPDATE runs SET status = 'planned', planned_through = NULL WHERE id = $1"
#: A run ended before it was planned whole. One cut while being planned keeps its cursor (never
#: NULL then): its contacts not planned read cancelled in the results, as the planned ones do.
_DROP_RUN = """
UPDATE runs SET status = 'cancelled',
    planned_through = CASE WHEN status = 'planning' THEN COALESCE(planned_through, '') END
WHERE id = $1
"""
_CANCEL_RUNS = """
UPDATE runs SET status = 'cancelled',
    planned_through = CASE WHEN status = 'planning' THEN COALESCE(planned_through, '') END
WHERE campaign_id = $1 AND status IN ('pending', 'planning')
"""
_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1"
_CAMPAIGN_LOCKED = _CAMPAIGN + " FOR NO KEY UPDATE"
# FOR SHARE: waits for an action under way on the campaign (a cancel holds the row), and holds off
# the next until this transaction ends.
_LIVE_SHARED = "SELECT status IN ('scheduled', 'running', 'paused') FROM campaigns WHERE id = $1 FOR SHARE"
_FAIL_CAMPAIGN = "UPDATE campaigns SET status = 'failed', status_reason = $2, updated_at = now() WHERE id = $1"
_FLOW = "INSERT INTO campaign_flow (campaign_id) VALUES ($1) ON CONFLICT DO NOTHING"
#: Live campaigns with deliveries due, and their flow (what waits in a queue, what is in flight).
_DUE_CAMPAIGNS = """
SELECT c.id, c.max_concurrent, COALESCE(f.queued, 0) AS queued, COALESCE(f.in_flight, 0) AS in_flight,
       COALESCE(f.started, 0) AS started
FROM campaigns c LEFT JOIN campaign_flow f ON f.campaign_id = c.id
WHERE c.status IN ('scheduled', 'running')
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.campaign_id = c.id AND d.state = 'planned' AND d.send_at <= $1)
"""
#: Up to each campaign's credit of its due deliveries, earliest first, marked queued. Each says
#: whether its contact moved since it was planned: another address on its channel (a phone's zones
#: and quiet hours are the number's), or a time zone of their own other than the one planned with.
_RELEASE = """
WITH due AS MATERIALIZED (
    SELECT p.id, p.contact_id, w.campaign_id FROM unnest($2::text[], $3::int[]) AS w(campaign_id, credit)
    CROSS JOIN LATERAL (
        SELECT d.id, d.contact_id FROM deliveries d
        WHERE d.campaign_id = w.campaign_id AND d.state = 'planned' AND d.send_at <= $1
        ORDER BY d.send_at
        LIMIT w.credit
        FOR UPDATE SKIP LOCKED
    ) AS p
)
UPDATE deliveries d SET state = 'queued', queued_at = $1, updated_at = now()
FROM due JOIN campaigns c ON c.id = due.campaign_id LEFT JOIN contacts ct ON ct.id = due.contact_id
WHERE d.id = due.id
RETURNING d.id, d.campaign_id, d.account_id, d.channel, d.send_at, d.plan_reason, c.sending_window,
    ct.id IS NOT NULL AND (
        CASE d.channel WHEN 'email' THEN ct.email ELSE ct.phone END IS DISTINCT FROM d.to_address
        OR ct.timezone IS DISTINCT FROM
            CASE WHEN d.plan_reason ->> 'zone_source' = 'contact' THEN d.plan_reason -> 'zones' ->> 0 END
    ) AS contact_moved
"""
#: What planning a released delivery again takes: its run, and its contact as planning reads one.
_REPLAN_INPUTS = f"""
SELECT d.id AS delivery_id, d.run_id, d.campaign_id, d.account_id, r.seq, r.occurs_wall, {_NEXT_WALL} AS next_wall,
       ct.id, ct.email, ct.phone, ct.timezone, ct.metadata, ct.opted_out_sms, ct.opted_out_email, ct.opted_out_voice
FROM deliveries d JOIN runs r ON r.id = d.run_id JOIN contacts ct ON ct.id = d.contact_id
WHERE d.id = ANY($1::text[])
"""  # noqa: S608 (constants)
_REPLAN = """
UPDATE deliveries d SET state = CASE WHEN u.error IS NULL THEN 'planned' ELSE 'skipped' END, error = u.error,
    queued_at = NULL, send_at = u.at, to_address = u.address, updated_at = now(),
    plan_reason = COALESCE(u.reason, '{}'::jsonb) || jsonb_build_object(
        'replanned_from', d.send_at, 'replanned_because', 'the contact moved since it was planned')
FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[], $4::text[], $5::text[]) AS u(id, at, reason, address, error)
WHERE d.id = u.id
"""
_DEFER = """
UPDATE deliveries d SET state = 'planned', queued_at = NULL, send_at = u.at, updated_at = now(),
    plan_reason = COALESCE(d.plan_reason, '{}'::jsonb)
        || jsonb_build_object('deferred_from', d.send_at, 'deferred_because', 'released late, outside its hours')
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
WHERE d.id = u.id
"""
_MARK_RUNNING = """
UPDATE campaigns SET status = 'running', updated_at = now()
WHERE id = ANY($1::text[]) AND status = 'scheduled'
"""
#: A run is complete once planned whole and none of its deliveries is open or in flight (a voice
#: call is under way until it ends), read off its counts.
_COMPLETE_RUNS = """
UPDATE runs r SET status = 'completed', completed_at = now()
WHERE r.status = 'planned'
  AND COALESCE((SELECT sum(c.planned + c.queued + c.in_flight) FROM delivery_counts c WHERE c.run_id = r.id), 0) = 0
RETURNING r.id AS run_id, r.campaign_id, r.account_id
"""
#: Campaigns with no run under way: completed, or back to scheduled while a next run is pending.
_SETTLE_CAMPAIGNS = """
UPDATE campaigns c SET
    status = CASE WHEN p.pending THEN 'scheduled' ELSE 'completed' END,
    completed_at = CASE WHEN p.pending THEN NULL ELSE now() END,
    updated_at = now()
FROM (
    SELECT c2.id, c2.status,
           EXISTS (SELECT 1 FROM runs r WHERE r.campaign_id = c2.id AND r.status = 'pending') AS pending
    FROM campaigns c2
    WHERE c2.status IN ('scheduled', 'running')
      AND EXISTS (SELECT 1 FROM runs r WHERE r.campaign_id = c2.id)
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.campaign_id = c2.id AND r.status IN ('planning', 'planned'))
) AS p
WHERE c.id = p.id AND NOT (p.status = 'scheduled' AND p.pending)
RETURNING c.id AS campaign_id, c.account_id, c.status
"""
#: Of the runs just completed, those in which no delivery succeeded and some failed.
_FAILED_RUNS = """
SELECT r.id AS run_id, r.campaign_id, r.account_id, r.seq,
       sum(c.failed)::int AS failed, sum(c.undelivered)::int AS undelivered
FROM runs r JOIN delivery_counts c ON c.run_id = r.id
WHERE r.id = ANY($1::text[])
GROUP BY r.id
HAVING sum(c.sent + c.delivered) = 0 AND sum(c.failed + c.undelivered) > 0
"""
#: A failed run's most frequent error, the earliest seen of those tied for most frequent (read
#: once, when the run ends): how often it was seen, how many errors were seen that often
#: (`tied`), and how many different errors the run saw (`kinds`).
_COMMON_ERROR = """
WITH seen AS (
    SELECT error, count(*)::int AS n, min(coalesce(failed_at, updated_at)) AS first_at FROM deliveries
    WHERE campaign_id = $1 AND run_id = $2 AND state IN ('failed', 'undelivered') AND error IS NOT NULL
    GROUP BY error
)
SELECT error, n, count(*) OVER (PARTITION BY n)::int AS tied, count(*) OVER ()::int AS kinds
FROM seen ORDER BY n DESC, first_at, error LIMIT 1
"""
#: A live campaign ended as failed, its later runs dropped.
_FAIL_ENDED = """
WITH ended AS (
    UPDATE campaigns SET status = 'failed', status_reason = $2, completed_at = now(), updated_at = now()
    WHERE id = $1 AND status IN ('scheduled', 'running')
    RETURNING id, account_id, status
), dropped AS (
    UPDATE runs SET status = 'cancelled', planned_through = NULL
    WHERE campaign_id = (SELECT id FROM ended) AND status IN ('pending', 'planning')
)
SELECT id AS campaign_id, account_id, status FROM ended
"""
#: Deliveries queued so long ago that their command must be lost (dead-lettered, or purged): planned
#: again, to be released in a new command. Safe even if a dispatcher still holds the old one: a
#: claim takes only a `queued` delivery, so whichever command claims it first sends it, once.
_REQUEUE = """
WITH stale AS (
    SELECT id FROM deliveries
    WHERE state = 'queued' AND updated_at < now() - make_interval(secs => $1)
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d SET state = 'planned', queued_at = NULL, send_at = $3, updated_at = now(),
    plan_reason = COALESCE(d.plan_reason, '{}'::jsonb) || jsonb_build_object('requeued_at', $3::timestamptz)
FROM stale WHERE d.id = stale.id
"""
#: A cancelled campaign's deliveries not yet handed to a provider, cancelled; and each planned run
#: that loses some of them with them (else, with nothing open left, it would read `completed`). A
#: run whose sends had all gone before the cancel loses nothing: it completes as it would have.
_CANCEL = """
WITH locked AS MATERIALIZED (  -- in id order, as every batch writer of deliveries locks them
    SELECT id FROM deliveries WHERE campaign_id = $1 AND state IN ('planned', 'queued') ORDER BY id FOR UPDATE
), cut AS (
    UPDATE deliveries d SET state = 'cancelled', error = 'campaign cancelled', updated_at = now()
    FROM locked WHERE d.id = locked.id AND d.state IN ('planned', 'queued')
    RETURNING d.run_id
), runs_cut AS (
    UPDATE runs SET status = 'cancelled' WHERE id IN (SELECT run_id FROM cut) AND status = 'planned'
)
SELECT count(*) FROM cut
"""


async def recipients(
    conn: Connection, account_id: str, campaign_id: str, group_ids: Sequence[str], batch: int = 5000
) -> AsyncIterator[list[asyncpg.Record]]:
    """The campaign's contacts (inline and from its groups), streamed in batches; needs a transaction."""
    chunk: list[asyncpg.Record] = []
    async for row in conn.cursor(_RECIPIENTS, account_id, campaign_id, list(group_ids), prefetch=batch):
        chunk.append(row)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def recipients_after(
    conn: Connection, account_id: str, campaign_id: str, group_ids: Sequence[str], after: str, limit: int
) -> list[asyncpg.Record]:
    """The campaign's next `limit` contacts (inline and from its groups) after contact id `after`."""
    return list(await conn.fetch(_RECIPIENTS_AFTER, account_id, campaign_id, list(group_ids), after, limit))


async def insert_run(
    conn: Connection,
    run_id: str,
    campaign_id: str,
    account_id: str,
    seq: int,
    occurs_at: datetime | None,
    occurs_wall: datetime | None,
) -> bool:
    """Create run number `seq`, to be planned in chunks from now; False if it already exists."""
    return await conn.fetchval(_INSERT_RUN, run_id, campaign_id, account_id, seq, occurs_at, occurs_wall) is not None


async def insert_pending_run(
    conn: Connection,
    run_id: str,
    campaign_id: str,
    account_id: str,
    seq: int,
    occurs_wall: datetime,
    plan_at: datetime,
    occurs_at: datetime | None = None,
) -> None:
    """Record the next run of a recurring campaign, to be planned at `plan_at` (`occurs_at`: its
    instant, when it is one for every contact)."""
    await conn.execute(_INSERT_PENDING_RUN, run_id, campaign_id, account_id, seq, occurs_wall, plan_at, occurs_at)


async def first_wall(conn: Connection, campaign_id: str) -> datetime | None:
    """The wall-clock time of a campaign's first run."""
    wall: datetime | None = await conn.fetchval(_FIRST_WALL, campaign_id)
    return wall


async def due_runs(conn: Connection, now: datetime, limit: int = 10) -> list[asyncpg.Record]:
    """Pending runs of live campaigns whose planning time has come (row-locked)."""
    return await conn.fetch(_DUE_RUNS, now, limit)


async def start_run(conn: Connection, run_id: str) -> None:
    """Mark a pending run as being planned (from its first contact)."""
    await conn.execute(_START_RUN, run_id)


async def planning_run(conn: Connection, run_id: str | None = None) -> asyncpg.Record | None:
    """A run being planned (that one, when given), row-locked until the transaction ends; None
    when there is none, or another scheduler holds it."""
    return await conn.fetchrow(_PLANNING, run_id)


async def planned_through(conn: Connection, run_id: str, contact_id: str) -> None:
    """Record that the run's contacts up to `contact_id` are planned."""
    await conn.execute(_PLANNED_THROUGH, run_id, contact_id)


async def finish_planning(conn: Connection, run_id: str) -> None:
    """The run is planned whole: it completes once its deliveries have all ended."""
    await conn.execute(_PLANNED, run_id)


async def drop_run(conn: Connection, run_id: str) -> None:
    """Stop planning a run whose campaign ended meanwhile (its cursor kept: what it had not
    planned yet counts as cancelled)."""
    await conn.execute(_DROP_RUN, run_id)


async def campaign(conn: Connection, campaign_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """A campaign by id (the scheduler's own view: any account), row-locked when `lock`."""
    return await conn.fetchrow(_CAMPAIGN_LOCKED if lock else _CAMPAIGN, campaign_id)


async def still_live(conn: Connection, campaign_id: str) -> bool:
    """Whether the campaign is still live, its row share-locked until the transaction ends: a cancel
    committed meanwhile is seen, and one that comes later waits until this transaction's rows are
    there for it to cancel."""
    return bool(await conn.fetchval(_LIVE_SHARED, campaign_id))


async def fail_campaign(conn: Connection, campaign_id: str, reason: str) -> None:
    """End a campaign as failed, saying why."""
    await conn.execute(_FAIL_CAMPAIGN, campaign_id, reason)


async def ensure_flow(conn: Connection, campaign_id: str) -> None:
    """The campaign's flow row (queued, in flight), which its claims lock."""
    await conn.execute(_FLOW, campaign_id)


async def copy_planned(conn: Connection, records: list[tuple[Any, ...]]) -> None:
    """Bulk-write planned deliveries (tuples in PLAN_COLUMNS order)."""
    await conn.copy_records_to_table("deliveries", records=records, columns=PLAN_COLUMNS)


async def due_campaigns(conn: Executor, now: datetime) -> list[asyncpg.Record]:
    """Live campaigns with deliveries due at `now`, with their flow (queued, in_flight, started)."""
    return list(await conn.fetch(_DUE_CAMPAIGNS, now))


async def release_due(conn: Connection, now: datetime, credits: Sequence[tuple[str, int]]) -> list[asyncpg.Record]:
    """Mark queued, for each (campaign, credit), up to `credit` of its deliveries due at `now`,
    earliest first; returns them (with the campaign's window)."""
    credits = [(c, n) for c, n in credits if n > 0]
    if not credits:
        return []
    rows = await conn.fetch(_RELEASE, now, [c for c, _ in credits], [n for _, n in credits])
    if rows:
        await conn.execute(_MARK_RUNNING, list({r["campaign_id"] for r in rows}))
    return rows


async def replan_inputs(conn: Connection, delivery_ids: Sequence[str]) -> list[asyncpg.Record]:
    """For deliveries to plan again: each one's run (`seq`, `occurs_wall`) and its contact's
    planning fields (the contact's `id`; the delivery's as `delivery_id`)."""
    return list(await conn.fetch(_REPLAN_INPUTS, list(delivery_ids)))


async def replan(
    conn: Connection, plans: Sequence[tuple[str, datetime, dict[str, Any] | None, str, str | None]]
) -> None:
    """Send released deliveries back to planned, or skip them: (id, new instant, new plan reason,
    the contact's address now, why it is skipped or None) each."""
    if plans:
        await conn.execute(_REPLAN, *(list(column) for column in zip(*plans, strict=True)))


async def defer(conn: Connection, moves: Sequence[tuple[str, datetime]]) -> None:
    """Send released deliveries back to planned, each at its new instant."""
    if moves:
        await conn.execute(_DEFER, [m[0] for m in moves], [m[1] for m in moves])


async def complete_finished(conn: Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Complete every run with no open delivery, then settle their campaigns: failed (with the
    reason) when no delivery of a run succeeded and some failed, else completed, or scheduled while
    a next run is pending; returns (runs completed, campaigns settled)."""
    runs = await conn.fetch(_COMPLETE_RUNS)
    failed: list[asyncpg.Record] = []
    if runs:
        for run in await conn.fetch(_FAILED_RUNS, [r["run_id"] for r in runs]):
            failed += await conn.fetch(_FAIL_ENDED, run["campaign_id"], await _failure_reason(conn, run))
    return runs, failed + list(await conn.fetch(_SETTLE_CAMPAIGNS))


async def _failure_reason(conn: Connection, run: asyncpg.Record) -> str:
    """`run 1: no delivery succeeded (3 failed, 1 undelivered; most often: … (3))`; with one error
    every time, `(12 failed; each: …)`; when no one error was seen more often than every other,
    `(4 failed; 4 different errors, e.g. …)`."""
    common = await conn.fetchrow(_COMMON_ERROR, run["campaign_id"], run["run_id"])
    parts = [f"{run['failed']} failed"] + ([f"{run['undelivered']} undelivered"] if run["undelivered"] else [])
    if common is None:
        errors = ""
    elif common["kinds"] == 1:  # one error, every time
        errors = f"; each: {common['error']}"
    elif common["tied"] == 1:
        errors = f"; most often: {common['error']} ({common['n']})"
    else:
        errors = f"; {common['kinds']} different errors, e.g. {common['error']}"
    return f"run {run['seq']}: no delivery succeeded ({', '.join(parts)}{errors})"


async def requeue_stale(conn: Executor, now: datetime, older_than_s: float, limit: int = 1000) -> int:
    """Plan again, due `now` (the scheduler's clock), the deliveries queued longer than
    `older_than_s` real seconds (their command was lost); how many."""
    result = await conn.execute(_REQUEUE, older_than_s, limit, now)
    return int(result.split()[-1])


async def cancel_pending(conn: Connection, campaign_id: str) -> int:
    """End every delivery of a campaign not yet handed to a provider, its future runs, and the runs
    those deliveries belonged to; how many deliveries. A run cut while being planned keeps its
    cursor: its contacts not planned yet count as cancelled (`campaigns.delivery_counts`)."""
    await conn.execute(_CANCEL_RUNS, campaign_id)
    cancelled: int = await conn.fetchval(_CANCEL, campaign_id)
    return cancelled
