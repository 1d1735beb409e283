"""The tracker's writes: callbacks recorded once, then applied to their delivery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import sending
from shared.db.connection import Connection, Executor
from shared.domain.deliveries import SMS_STATUS_COLUMNS

_RECORD = """
INSERT INTO webhook_events (provider, kind, dedupe_key, delivery_id, payload)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id
"""
_COLUMNS = frozenset({"state", "provider_status", "sent_at", "delivered_at", "failed_at", "error", "provider_id"})


#: The deliveries a batch of status callbacks is about (by our id, else by the provider's).
_FOR_STATUSES = """
SELECT id, campaign_id, state, provider_id, provider_status, sent_at, delivered_at, failed_at, error
FROM deliveries WHERE id = ANY($1::text[]) OR provider_id = ANY($2::text[])
"""
# The new status columns of many deliveries, each written only if its status columns are still as
# read (another writer may have moved it meanwhile: that one is read and folded again). One
# statement, no lock held across the fold.
_SET_STATUSES = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                         $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                         $12::timestamptz[], $13::timestamptz[])
        AS u(id, state, provider_status, sent_at, delivered_at, failed_at, error, provider_id,
             was_state, was_status, was_provider_id, was_sent_at, was_delivered_at)
), locked AS MATERIALIZED (  -- in id order, as every batch writer of deliveries locks them
    SELECT u.* FROM deliveries d JOIN u ON u.id = d.id ORDER BY d.id FOR UPDATE OF d
)
UPDATE deliveries d SET state = u.state, provider_status = u.provider_status, sent_at = u.sent_at,
    delivered_at = u.delivered_at, failed_at = u.failed_at, error = u.error, provider_id = u.provider_id,
    updated_at = now()
FROM locked u  -- (the values ride with the locks: one join, not a second one per row)
WHERE d.id = u.id AND d.state = u.was_state AND d.provider_status IS NOT DISTINCT FROM u.was_status
  AND d.provider_id IS NOT DISTINCT FROM u.was_provider_id AND d.sent_at IS NOT DISTINCT FROM u.was_sent_at
  AND d.delivered_at IS NOT DISTINCT FROM u.was_delivered_at
RETURNING d.id
"""
#: The columns a status callback reads, which must not have moved for its change to be written.
_READ = ("state", "provider_status", "provider_id", "sent_at", "delivered_at")


async def for_statuses(
    conn: Executor, delivery_ids: Sequence[str], provider_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """The deliveries named by our ids or by the provider's, as they are now (not locked)."""
    return list(await conn.fetch(_FOR_STATUSES, list(delivery_ids), list(provider_ids)))


async def set_statuses(conn: Executor, changes: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> set[str]:
    """Write the status columns of many deliveries, each a (row as read, row as changed) pair, in
    one statement; the ids written (the others moved since they were read)."""
    if not changes:
        return set()
    news = [new for _, new in changes]
    olds = [old for old, _ in changes]
    rows = await conn.fetch(
        _SET_STATUSES,
        [n["id"] for n in news],
        *([n[c] for n in news] for c in SMS_STATUS_COLUMNS),
        *([o[c] for o in olds] for c in _READ),
    )
    return {r["id"] for r in rows}


async def record_event(
    conn: Connection,
    provider: str,
    kind: str,
    dedupe_key: str,
    delivery_id: str | None,
    payload: dict[str, Any],
) -> bool:
    """Store a callback; False if the same one was stored before (a retry or a replay)."""
    return await conn.fetchval(_RECORD, provider, kind, dedupe_key, delivery_id, payload) is not None


async def update_delivery(
    conn: Connection, delivery_id: str, change: dict[str, Any], allowed: frozenset[str] = _COLUMNS
) -> None:
    """Apply `change` (column → value; columns from the fixed list `allowed`) to a delivery."""
    columns = sorted(change)
    if not columns:
        return
    if not set(columns) <= allowed:
        raise ValueError(f"not a delivery column: {set(columns) - allowed}")
    assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    await conn.execute(
        f"UPDATE deliveries SET {assignments}, updated_at = now() WHERE id = $1",  # noqa: S608 (fixed columns)
        delivery_id,
        *(change[c] for c in columns),
    )


_LATEST_DELIVERY = """
SELECT d.id, d.account_id, d.campaign_id, d.contact_id, d.replied_at, d.channel
FROM deliveries d
WHERE d.to_address = $1 AND d.channel = $2 AND d.sent_at IS NOT NULL
ORDER BY d.sent_at DESC LIMIT 1
FOR UPDATE
"""
_CAMPAIGN_SENDER = "SELECT from_number FROM campaigns WHERE id = $1"
_MARK_REPLIED = "UPDATE deliveries SET replied_at = COALESCE(replied_at, now()), updated_at = now() WHERE id = $1"
_SET_OPT_OUT = "UPDATE contacts SET opted_out_sms = $2, updated_at = now() WHERE id = $1"
_INSERT_MESSAGE = """
INSERT INTO messages
    (id, account_id, contact_id, campaign_id, delivery_id, channel, direction, body, provider_id, author, cost, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
#: An answer that could not be sent after all: its charge given back, and why.
_UNSENT = "UPDATE messages SET cost = NULL, error = $2 WHERE id = $1"
#: Whether the agent already said something on this call (a repeated answer webhook).
_SAID_ON_CALL = """
SELECT EXISTS (SELECT 1 FROM messages WHERE contact_id = $1 AND delivery_id = $2 AND provider_id = $3
               AND direction = 'out' AND author = 'agent')
"""
#: The campaign's sends to a contact, as its conversation holds them (`d`, of campaign `{campaign}`
#: and contact `{contact}`): each send's message, but a call's opening the tracker recorded as the
#: agent's first message on the call, when it was answered (services/tracker/voice.py): the
#: conversation holds it already. An answer of the agent's later in the call is no opening, whatever
#: it says. The dashboard shows these (shared/db/activity.py) and the agents are given them.
CAMPAIGN_SENDS = """
d.campaign_id = {campaign} AND d.contact_id = {contact} AND d.sent_at IS NOT NULL AND d.rendered IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM (
          SELECT m.author, m.body FROM messages m
          WHERE m.campaign_id = {campaign} AND m.contact_id = {contact} AND m.delivery_id = d.id
            AND m.direction = 'out'
          ORDER BY m.created_at, m.id LIMIT 1
      ) AS first_out
      WHERE d.channel = 'voice' AND first_out.author = 'agent' AND first_out.body = d.rendered
  )
"""
#: What the contact saw, oldest first: the campaign's message (each run's, as `campaign` out), then
#: what was said; a send and a message at the same instant, the send first. A reply kept but not
#: sent (`error`) is left out. The latest HISTORY_MAX only (a campaign that recurs daily for years
#: hands an agent its recent exchange, not all of it).
HISTORY_MAX = 100
_HISTORY = f"""
SELECT l.direction, l.author, l.body FROM (
    SELECT h.* FROM (
        SELECT 'out' AS direction, 'campaign' AS author, d.rendered AS body, d.sent_at AS at, 0 AS said, d.id
        FROM deliveries d WHERE {CAMPAIGN_SENDS.format(campaign="$2", contact="$1")}
        UNION ALL
        SELECT m.direction, m.author, m.body, m.created_at, 1, m.id FROM messages m
        WHERE m.contact_id = $1 AND m.campaign_id = $2 AND m.error IS NULL
    ) AS h
    ORDER BY h.at DESC, h.said DESC, h.direction = 'out' DESC, h.id DESC
    LIMIT {HISTORY_MAX}
) AS l
ORDER BY l.at, l.said, l.direction = 'out', l.id
"""  # noqa: S608 (constants)


async def latest_delivery_to(conn: Connection, address: str, channel: str) -> asyncpg.Record | None:
    """The delivery most recently sent to `address`: the one a reply from it answers (row-locked)."""
    return await conn.fetchrow(_LATEST_DELIVERY, address, channel)


async def campaign_sender(conn: Executor, campaign_id: str) -> str | None:
    """The address a campaign sends from (`from_number`: a phone, or an email address), if set."""
    sender: str | None = await conn.fetchval(_CAMPAIGN_SENDER, campaign_id)
    return sender


async def mark_replied(conn: Connection, delivery_id: str) -> None:
    """Record the first reply to a delivery (later ones keep the first time)."""
    await conn.execute(_MARK_REPLIED, delivery_id)


async def set_sms_opt_out(conn: Connection, contact_id: str, opted_out: bool) -> None:
    """Opt a contact out of SMS (STOP) or back in (START)."""
    await conn.execute(_SET_OPT_OUT, contact_id, opted_out)


async def add_message(
    conn: Executor,
    message_id: str,
    delivery: Any,
    direction: str,
    body: str,
    provider_id: str | None,
    author: str,
    cost: Decimal | None = None,
    error: str | None = None,
) -> None:
    """Record one message of a conversation: with what sending it cost (an SMS answer), or why it
    was not sent (`error`)."""
    await conn.execute(
        _INSERT_MESSAGE,
        message_id,
        delivery["account_id"],
        delivery["contact_id"],
        delivery["campaign_id"],
        delivery["id"],
        delivery["channel"],
        direction,
        body,
        provider_id,
        author,
        cost,
        error,
    )


async def unsent(conn: Executor, message_id: str, error: str) -> None:
    """An answer recorded as sent could not be: it says why, and cost nothing."""
    await conn.execute(_UNSENT, message_id, error)


async def said_on_call(conn: Executor, delivery: Any, call_sid: str) -> bool:
    """Whether the agent has spoken on the call `call_sid` of `delivery` already."""
    return bool(await conn.fetchval(_SAID_ON_CALL, delivery["contact_id"], delivery["id"], call_sid))


async def history(conn: Executor, contact_id: str, campaign_id: str) -> list[asyncpg.Record]:
    """The conversation with a contact within one campaign as the contact saw it, oldest first,
    from the campaign's own message on (`direction`, `author`: `campaign`, `contact`, `agent` or
    `system`, `body`)."""
    return await conn.fetch(_HISTORY, contact_id, campaign_id)


#: Whether the contact wrote back about delivery `d` (a reply, or a keyword such as STOP).
_ANSWERED = """
EXISTS (SELECT 1 FROM messages m WHERE m.contact_id = d.contact_id AND m.delivery_id = d.id AND m.direction = 'in')
"""
_EMAIL_DELIVERY = f"""
SELECT d.id, d.account_id, d.campaign_id, d.contact_id, d.channel, d.state, d.to_address, d.replied_at,
       {_ANSWERED} AS answered
FROM deliveries d
WHERE d.provider_id = ANY($1::text[]) AND d.channel = 'email'
LIMIT 1
FOR UPDATE
"""  # noqa: S608 (constants)
_BOUNCE = f"""
UPDATE deliveries d SET state = 'undelivered', error = $2, failed_at = COALESCE(failed_at, now()), updated_at = now()
WHERE id = $1 AND state IN ('sending', 'sent', 'delivered') AND replied_at IS NULL AND NOT {_ANSWERED}
"""  # noqa: S608 (constants)


async def email_delivery_for_update(conn: Connection, message_ids: list[str]) -> asyncpg.Record | None:
    """The email delivery one of `message_ids` (our Message-IDs) names, row-locked."""
    return await conn.fetchrow(_EMAIL_DELIVERY, message_ids)


async def bounce_email(conn: Connection, delivery: asyncpg.Record, error: str) -> bool:
    """A hard bounce: the delivery is undelivered (unless it already ended otherwise) and the
    address is skipped by later email campaigns. Whether the delivery changed. A bounce for a
    delivery the contact wrote back about is stale (a person read and answered it, if only with
    STOP, which is no reply): it changes nothing and the address stays as it is."""
    if delivery["replied_at"] is not None or delivery["answered"]:
        return False
    changed = await conn.execute(_BOUNCE, delivery["id"], error) != "UPDATE 0"
    await sending.opt_out(conn, [delivery["contact_id"]], "email")
    return changed
