"""A dispatcher's writes, a batch at a time: claim deliveries within the campaign's room, settle
those not to send, record what the provider said (with the charges), each batch one transaction.

Lock order, the same for every writer of deliveries: delivery rows (by id), then `campaign_flow`,
then `delivery_counts`, then campaigns and accounts (charges) — the triggers of migration 0010 —
then contacts. A claim takes its campaign's flow row first and skips locked delivery rows, so it
never waits on a delivery row while holding the flow row. Each write here is one statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from shared.db.connection import Executor

#: SQLSTATE of a charge that would take an account's balance below zero (migration 0024).
FUNDS_SHORT = "CA402"


class FundsShort(Exception):
    """Sends were claimed (or handed over) that the account's balance cannot cover: another claim of
    the same account took the money meanwhile. Nothing of the statement was written."""


#: Everything a send needs: the delivery, its campaign, contact, agent and the account's prices.
#: `to_address` is the contact's address as it is now (a phone or email changed since planning is
#: followed; none left, the delivery is skipped), claimed with the send (`_CLAIM`, `_RECORD`).
_LOAD = """
SELECT d.id, d.state, d.attempts, CASE d.channel WHEN 'email' THEN ct.email ELSE ct.phone END AS to_address,
       d.campaign_id, d.account_id, d.contact_id, d.channel,
       c.status AS campaign_status, c.message_template, c.subject_template, c.html_template,
       c.from_number, c.max_retries, c.retry_interval, c.voice,
       ct.first_name, ct.last_name, ct.email, ct.phone, ct.company, ct.metadata,
       ct.opted_out_sms, ct.opted_out_email, ct.opted_out_voice,
       a.name AS agent_name, a.opening_message AS agent_opening, acc.price_sms, acc.price_email, acc.price_voice_minute
FROM deliveries d
JOIN campaigns c ON c.id = d.campaign_id
JOIN contacts ct ON ct.id = d.contact_id
JOIN accounts acc ON acc.id = d.account_id
LEFT JOIN agents a ON a.id = c.agent_id
WHERE d.id = ANY($1::text[])
"""
_STATES = "SELECT id, state FROM deliveries WHERE id = ANY($1::text[])"
_UNSUBSCRIBE_EMAIL = """
UPDATE contacts SET opted_out_email = true, updated_at = now()
WHERE id = $1 AND account_id = $2 AND NOT opted_out_email
"""
# One statement: lock the campaign's flow row, work out its room (max_concurrent less what every
# replica has in flight; none unless the campaign is live), and claim up to that many (and up to $3)
# of the deliveries still `queued` whose contact is still opted in at the address loaded ($11, the
# delivery's address from now on), skipping rows another claim holds. A contact who opted out or
# changed address since the batch was loaded is not claimed (it is decided again).
#
# Each claimed delivery's cost ($10, from its rendered text) is set, and so held (migration 0024):
# only the first deliveries of the list whose costs together the campaign's reservation and its
# account's balance cover are claimed (read here; a claim that races another of the same account's
# past the balance fails whole, with SQLSTATE CA402, at the charge). `needed`: the cost of the first
# delivery still to send that the money stopped it short of (one another replica sent meanwhile, or
# that was settled, stops nothing).
_CLAIM = """
WITH room AS MATERIALIZED (
    SELECT c.status, f.in_flight,
           CASE WHEN c.status IN ('scheduled', 'running') THEN GREATEST(c.max_concurrent - f.in_flight, 0) ELSE 0 END
               AS free
    FROM campaign_flow f JOIN campaigns c ON c.id = f.campaign_id
    WHERE f.campaign_id = $4
    FOR UPDATE OF f
), sender AS MATERIALIZED (  -- the campaign's own sender, paced (the platform's default is not)
    SELECT s.account_id, s.kind, s.address,
           COALESCE(s.max_per_second, CASE
               WHEN s.kind = 'email' THEN $8::float8
               WHEN s.address ~ '^\\+?[0-9]{5,6}$' THEN $7::float8
               WHEN s.address ~ '^\\+1(800|833|844|855|866|877|888)' THEN $6::float8
               ELSE $5::float8 END) AS rate,
           GREATEST(COALESCE(s.rate_tat, now()), now()) AS next_free
    FROM campaigns c JOIN sender_identities s ON s.account_id = c.account_id AND s.address = c.from_number
    WHERE c.id = $4 AND s.verified_at IS NOT NULL
    FOR UPDATE OF s
), allowed AS MATERIALIZED (  -- the sends whose slots start by now (a moment's look-ahead)
    SELECT GREATEST(0, floor(extract(epoch FROM now() + interval '20 milliseconds' - next_free)
                             * rate / $9::float8) + 1)::int AS k
    FROM sender WHERE rate > 0
), affordable AS MATERIALIZED (  -- how far into the list the campaign's money goes (see below)
    SELECT COALESCE(max(u.ord) FILTER (WHERE u.spent <= f.funds), 0) AS last, min(f.funds) AS funds
    FROM (SELECT ord, sum(cost) OVER (ORDER BY ord) AS spent
          FROM unnest($10::numeric[]) WITH ORDINALITY AS u(cost, ord)) AS u,
         (SELECT c.reserved + a.balance AS funds FROM campaigns c JOIN accounts a ON a.id = c.account_id
          WHERE c.id = $4) AS f
), picked AS MATERIALIZED (
    SELECT d.id, u.rendered, u.cost, u.address FROM unnest($1::text[], $2::text[], $10::numeric[], $11::text[])
        WITH ORDINALITY AS u(id, rendered, cost, address, ord)
    JOIN deliveries d ON d.id = u.id
    JOIN contacts ct ON ct.id = d.contact_id
    WHERE d.state = 'queued' AND u.ord <= (SELECT last FROM affordable)
      AND NOT CASE d.channel WHEN 'sms' THEN ct.opted_out_sms WHEN 'email' THEN ct.opted_out_email
                             ELSE ct.opted_out_voice END
      AND CASE d.channel WHEN 'email' THEN ct.email ELSE ct.phone END = u.address
    ORDER BY u.ord
    LIMIT LEAST($3, COALESCE((SELECT free FROM room), 0), COALESCE((SELECT k FROM allowed), 2147483647))
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE deliveries d SET state = 'sending', attempts = d.attempts + 1, sending_at = now(),
        rendered = p.rendered, cost = p.cost, to_address = p.address, updated_at = now()
    FROM picked p WHERE d.id = p.id
    RETURNING d.id
), paced AS (  -- each send claimed takes its slot: the next starts 1/rate (with margin) later
    UPDATE sender_identities s
    SET rate_tat = se.next_free + make_interval(secs => (SELECT count(*) FROM claimed) * $9::float8 / se.rate)
    FROM sender se
    WHERE s.account_id = se.account_id AND s.kind = se.kind AND s.address = se.address AND se.rate > 0
      AND EXISTS (SELECT 1 FROM claimed)
    RETURNING s.rate_tat
)
SELECT (SELECT status FROM room) AS status,
       LEAST(COALESCE((SELECT free FROM room), 0), COALESCE((SELECT k FROM allowed), 2147483647)) AS free,
       ARRAY(SELECT id FROM claimed) AS claimed,
       (SELECT u.cost FROM unnest($1::text[], $10::numeric[]) WITH ORDINALITY AS u(id, cost, ord)
        JOIN deliveries d ON d.id = u.id JOIN contacts ct ON ct.id = d.contact_id
        WHERE u.ord > (SELECT last FROM affordable) AND d.state = 'queued'
          AND NOT CASE d.channel WHEN 'sms' THEN ct.opted_out_sms WHEN 'email' THEN ct.opted_out_email
                                 ELSE ct.opted_out_voice END
        ORDER BY u.ord LIMIT 1) AS needed,
       (SELECT funds FROM affordable) AS funds,
       -- as the statement's snapshot has it, as the money above is read: the room's row, locked,
       -- is read again once a writer that held it commits, and so may already show a send ended
       -- whose cost, given back by the same commit, the money read before did not see
       COALESCE((SELECT f.in_flight FROM campaign_flow f WHERE f.campaign_id = $4), 0) AS in_flight,
       extract(epoch FROM COALESCE((SELECT rate_tat FROM paced), (SELECT next_free FROM sender WHERE rate > 0))
                          - now())::float8 AS rate_wait
"""
# Rows locked in id order first, as every batch writer of deliveries does (no deadlock between two
# batches, or a batch and a campaign's cancellation).
_SETTLE = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, state, error)
), locked AS MATERIALIZED (  -- (each outcome rides with its lock: one join, not a second one per row)
    SELECT u.* FROM deliveries d JOIN u ON u.id = d.id WHERE d.state = 'queued' ORDER BY d.id FOR UPDATE OF d
)
UPDATE deliveries d SET state = u.state, error = u.error, updated_at = now(),
    failed_at = CASE WHEN u.state = 'failed' THEN now() ELSE d.failed_at END
FROM locked u  -- (still `queued`: a row lock's wait reads the row again before taking it)
WHERE d.id = u.id
RETURNING d.id
"""
# Outcomes of sends, one statement for the batch. A `sent` never undoes a later status a faster
# callback set; a retry or a failure applies only to a delivery still `sending`. A send's cost was
# set (held) by its claim; a retry or a failure takes it back (migration 0024's charge, in this same
# statement, returns it), and a `sent` keeps it.
#
# Hand-over: an outcome may name the next delivery of its lane. When the recorded delivery gives
# its place in `max_concurrent` back here (it was `sending` and is no longer in flight), that next
# one is claimed in the same statement, in its place: the campaign's in-flight count does not move,
# so no room needs reading, and a lane at its limit sends on without waiting for a claim round. Its
# cost is held as a claim's is, when the campaign's money covers it (CA402 if hand-overs racing one
# another take the balance below zero: the outcomes are then recorded without them).
_RECORD = """
WITH o AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::timestamptz[], $7::text[],
                         $8::text[], $9::text[], $10::numeric[], $11::text[])
        AS o(id, outcome, provider_id, provider_status, cost, retry_at, error, next_id, next_rendered, next_cost,
             next_address)
), locked AS MATERIALIZED (  -- (each outcome rides with its lock: one join, not a second one per row)
    SELECT o.*, d.state AS was FROM deliveries d JOIN o ON o.id = d.id ORDER BY d.id FOR UPDATE OF d
), recorded AS (
    UPDATE deliveries d SET
        state = CASE
            WHEN o.outcome = 'sent' THEN CASE WHEN o.was = 'sending' THEN 'sent' ELSE o.was END
            WHEN o.was <> 'sending' THEN o.was
            WHEN o.outcome = 'retry' THEN 'planned'
            ELSE 'failed' END,
        provider_id = COALESCE(o.provider_id, d.provider_id),
        provider_status = CASE WHEN o.outcome = 'sent' THEN COALESCE(d.provider_status, o.provider_status)
                               ELSE d.provider_status END,
        sent_at = CASE WHEN o.outcome = 'sent' AND o.was NOT IN ('planned', 'queued')
                       THEN COALESCE(d.sent_at, now()) ELSE d.sent_at END,
        send_at = CASE WHEN o.outcome = 'retry' AND o.was = 'sending' THEN o.retry_at ELSE d.send_at END,
        error = CASE WHEN o.outcome = 'sent' THEN NULL WHEN o.was = 'sending' THEN o.error ELSE d.error END,
        failed_at = CASE WHEN o.outcome = 'failed' AND o.was = 'sending' THEN now() ELSE d.failed_at END,
        cost = CASE WHEN o.was <> 'sending' THEN d.cost WHEN o.outcome = 'sent' THEN COALESCE(d.cost, o.cost)
                    ELSE NULL END,
        updated_at = now()
    FROM locked o
    WHERE d.id = o.id
    RETURNING d.state, d.channel, o.was, o.next_id, o.next_rendered, o.next_cost, o.next_address
), freed AS (
    SELECT r.next_id, r.next_rendered, r.next_cost, r.next_address FROM recorded r
    WHERE r.next_id IS NOT NULL AND r.was = 'sending'
      AND NOT (r.state = 'sending' OR (r.channel = 'voice' AND r.state = 'sent'))
), picked AS MATERIALIZED (
    SELECT d.id, f.next_rendered AS rendered, f.next_cost AS cost, f.next_address AS address FROM freed f
    JOIN deliveries d ON d.id = f.next_id
    JOIN campaigns c ON c.id = d.campaign_id
    JOIN contacts ct ON ct.id = d.contact_id
    WHERE d.state = 'queued' AND c.status IN ('scheduled', 'running')
      AND (c.reserved >= COALESCE(f.next_cost, 0)  -- (the balance read only once the reservation is spent)
           OR c.reserved + (SELECT a.balance FROM accounts a WHERE a.id = c.account_id) >= f.next_cost)
      AND NOT CASE d.channel WHEN 'sms' THEN ct.opted_out_sms WHEN 'email' THEN ct.opted_out_email
                             ELSE ct.opted_out_voice END
      AND CASE d.channel WHEN 'email' THEN ct.email ELSE ct.phone END = f.next_address
      -- a paced sender's next send waits for its slot, taken by a claim (never handed over)
      AND NOT EXISTS (SELECT 1 FROM sender_identities s WHERE s.account_id = c.account_id
                      AND s.address = c.from_number AND s.verified_at IS NOT NULL)
    FOR UPDATE OF d SKIP LOCKED
), handed AS (
    UPDATE deliveries d SET state = 'sending', attempts = d.attempts + 1, sending_at = now(),
        rendered = p.rendered, cost = p.cost, to_address = p.address, updated_at = now()
    FROM picked p WHERE d.id = p.id
    RETURNING d.id
)
SELECT id FROM handed
"""
_OPT_OUT = {
    "sms": "UPDATE contacts SET opted_out_sms = true, updated_at = now() WHERE id = ANY($1::text[])",
    "email": "UPDATE contacts SET opted_out_email = true, updated_at = now() WHERE id = ANY($1::text[])",
    "voice": "UPDATE contacts SET opted_out_voice = true, updated_at = now() WHERE id = ANY($1::text[])",
}
_STUCK = """
SELECT d.id, d.campaign_id, d.to_address, d.rendered, d.sending_at, d.attempts, d.contact_id,
       c.from_number, c.max_retries, c.retry_interval, acc.price_sms
FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id JOIN accounts acc ON acc.id = d.account_id
WHERE d.channel = $1 AND d.state = 'sending' AND d.sending_at < now() - make_interval(secs => $2)
ORDER BY d.sending_at
LIMIT $3
"""


@dataclass(frozen=True)
class Claim:
    """What a claim found: the campaign's state (None when nothing of it was ever released), how
    many sends it allowed to start, and the deliveries claimed."""

    status: str | None
    free: int
    claimed: list[str]
    #: Seconds until the campaign's sender may start its next send (None: its sender is not paced).
    rate_wait: float | None = None
    #: What the first delivery still to send that the campaign's money stopped the claim short of
    #: costs (None: the money stopped nothing), and what money it had (its reservation and its
    #: account's balance).
    needed: Decimal | None = None
    funds: Decimal | None = None
    #: The campaign's sends in flight when it claimed (on every replica).
    in_flight: int = 0


@dataclass(frozen=True)
class SenderRates:
    """Sends a second a sender identity makes when it sets no `max_per_second`, by kind of number
    (US toll-free numbers, 5-6 digit short codes, other numbers: long codes) and for email, and the
    margin each send's slot takes beyond 1/rate (so that the provider, after the jitter between a
    claim and its request, never sees more than the rate in any second)."""

    long_code: float = 1.0
    toll_free: float = 3.0
    short_code: float = 100.0
    email: float = 10.0
    margin: float = 1.05


@dataclass(frozen=True)
class Outcome:
    """What became of one send: `sent` (with the provider's id, status and the cost to charge),
    `retry` (at `retry_at`) or `failed`, with the error."""

    delivery_id: str
    outcome: str
    provider_id: str | None = None
    provider_status: str | None = None
    cost: Decimal | None = None
    retry_at: datetime | None = None
    error: str | None = None
    #: The next delivery of the same campaign to claim in this one's place, its rendered text,
    #: what it costs and the contact's address it goes to.
    next_id: str | None = None
    next_rendered: str | None = None
    next_cost: Decimal | None = None
    next_address: str | None = None


async def load(conn: Executor, delivery_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The deliveries with their campaign, contact, agent and prices (not locked)."""
    return list(await conn.fetch(_LOAD, list(delivery_ids)))


async def states(conn: Executor, delivery_ids: Sequence[str]) -> dict[str, str]:
    """Each delivery's state now."""
    return {r["id"]: r["state"] for r in await conn.fetch(_STATES, list(delivery_ids))}


async def claim(
    conn: Executor,
    campaign_id: str,
    delivery_ids: Sequence[str],
    rendered: Sequence[str],
    costs: Sequence[Decimal],
    addresses: Sequence[str],
    limit: int,
    rates: SenderRates = SenderRates(),
) -> Claim:
    """Move up to `limit` of the deliveries (in the order given) to `sending` with their rendered
    text and the contact's address each was rendered for (not claimed once it changed), holding
    their costs, within the campaign's room, its sender's pace and its money: those
    still `queued`, their contact still opted in, not held by another claim. One statement: never
    more in flight than `max_concurrent`, nor faster than the sender's rate, nor past the balance,
    across replicas and campaigns (FundsShort when another claim took the balance meanwhile)."""
    with _funds_checked():
        row = await conn.fetchrow(
            _CLAIM,
            list(delivery_ids),
            list(rendered),
            max(limit, 0),
            campaign_id,
            rates.long_code,
            rates.toll_free,
            rates.short_code,
            rates.email,
            rates.margin,
            list(costs),
            list(addresses),
        )
    assert row is not None  # a SELECT of scalars: always one row
    return Claim(
        row["status"],
        row["free"],
        list(row["claimed"]),
        row["rate_wait"],
        row["needed"],
        row["funds"],
        row["in_flight"],
    )


async def settle(conn: Executor, verdicts: Sequence[tuple[str, str, str | None]]) -> list[str]:
    """Give `queued` deliveries that are not to be sent their state (id, state, error): planned
    again (paused campaign), cancelled, skipped or failed. The ids that changed."""
    if not verdicts:
        return []
    ids, states_, errors = zip(*verdicts, strict=True)
    rows = await conn.fetch(_SETTLE, list(ids), list(states_), list(errors))
    return [r["id"] for r in rows]


async def record(conn: Executor, outcomes: Sequence[Outcome]) -> set[str]:
    """Record a batch of send outcomes in one statement (the costs of sends that did not happen are
    given back); the next deliveries handed over (claimed in a recorded one's place, see _RECORD).
    FundsShort when hand-overs racing one another ran past the balance: record them without."""
    if not outcomes:
        return set()
    with _funds_checked():
        rows = await conn.fetch(
            _RECORD,
            [o.delivery_id for o in outcomes],
            [o.outcome for o in outcomes],
            [o.provider_id for o in outcomes],
            [o.provider_status for o in outcomes],
            [o.cost for o in outcomes],
            [o.retry_at for o in outcomes],
            [o.error for o in outcomes],
            [o.next_id for o in outcomes],
            [o.next_rendered for o in outcomes],
            [o.next_cost for o in outcomes],
            [o.next_address for o in outcomes],
        )
    return {r["id"] for r in rows}


@contextmanager
def _funds_checked() -> Iterator[None]:
    """A statement's charge refused for want of balance is FundsShort."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == FUNDS_SHORT:
            raise FundsShort(str(exc)) from exc
        raise


async def unsubscribe_email(conn: Executor, account_id: str, contact_id: str) -> bool:
    """Opt one of the account's contacts out of email (an unsubscribe link); whether it changed
    anything (False: opted out already, or no such contact)."""
    return str(await conn.execute(_UNSUBSCRIBE_EMAIL, contact_id, account_id)) != "UPDATE 0"


async def opt_out(conn: Executor, contact_ids: Sequence[str], channel: str) -> None:
    """Mark the contacts opted out of `channel`."""
    if contact_ids:
        await conn.execute(_OPT_OUT[channel], list(contact_ids))


async def stuck(conn: Executor, channel: str, older_than_s: float, limit: int = 100) -> list[asyncpg.Record]:
    """Deliveries left `sending` longer than any provider call may take (a crash or a timeout)."""
    return list(await conn.fetch(_STUCK, channel, older_than_s, limit))
