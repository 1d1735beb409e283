"""What the dashboard reads beside the results: a campaign's sends over time, the contacts waiting
for their hours, its conversations, its inline recipients, and a contact's history. Reads only;
call each for a campaign or contact of the caller's account."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.db.connection import Executor
from shared.db.tracking import CAMPAIGN_SENDS

# Bounded by `since`: at most the chart's buckets are returned.
_BUCKETS = """
SELECT b.at, sum(b.sent)::int AS sent, sum(b.delivered)::int AS delivered, sum(b.replied)::int AS replied
FROM (
    SELECT date_bin(make_interval(secs => $2), sent_at, $3) AS at, 1 AS sent, 0 AS delivered, 0 AS replied
    FROM deliveries WHERE campaign_id = $1 AND sent_at >= $3
    UNION ALL
    SELECT date_bin(make_interval(secs => $2), delivered_at, $3), 0, 1, 0
    FROM deliveries WHERE campaign_id = $1 AND delivered_at >= $3
    UNION ALL
    SELECT date_bin(make_interval(secs => $2), replied_at, $3), 0, 0, 1
    FROM deliveries WHERE campaign_id = $1 AND replied_at >= $3
) AS b
GROUP BY b.at ORDER BY b.at
"""
_WAITING = """
SELECT count(*) AS waiting,
       min(send_at) AS next_at,
       count(*) FILTER (WHERE plan_reason -> 'adjustments' ?| array['outside_window_moved', 'excluded_day_skipped'])
           AS for_window,
       min(send_at) FILTER (WHERE plan_reason -> 'adjustments' ?| array['outside_window_moved', 'excluded_day_skipped'])
           AS window_opens_at,
       count(*) FILTER (WHERE plan_reason -> 'adjustments' ? 'quiet_hours_moved') AS for_quiet_hours,
       min(send_at) FILTER (WHERE plan_reason -> 'adjustments' ? 'quiet_hours_moved') AS quiet_hours_end_at
FROM deliveries WHERE campaign_id = $1 AND state = 'planned' AND send_at > $2
"""
#: The campaign's sends to each contact of `_CONVERSATIONS`, as its conversation shows them.
_SENDS_TO_EACH = CAMPAIGN_SENDS.format(campaign="$1", contact="m.contact_id")
#: Each contact's messages as its conversation shows them (the campaign's sends, then what was
#: said), those from the contact (`incoming`, keywords too), and `replied`: their deliveries of the
#: campaign with a reply, as the results count `replied` (a keyword, STOP, HELP or START, is no
#: reply there).
_CONVERSATIONS = f"""
SELECT m.contact_id, c.phone, c.email, c.first_name, c.last_name,
       count(*) + (SELECT count(*) FROM deliveries d WHERE {_SENDS_TO_EACH}) AS messages,
       count(*) FILTER (WHERE m.direction = 'in') AS incoming, max(m.created_at) AS last_at,
       (SELECT count(*) FROM deliveries d
        WHERE d.campaign_id = $1 AND d.contact_id = m.contact_id AND d.replied_at IS NOT NULL) AS replied
FROM messages m JOIN contacts c ON c.id = m.contact_id
WHERE m.campaign_id = $1
GROUP BY m.contact_id, c.phone, c.email, c.first_name, c.last_name
ORDER BY max(m.created_at) DESC, m.contact_id
LIMIT $2
"""  # noqa: S608 (constants)
_CONVERSATION = """
SELECT m.id, m.direction, m.author, m.body, m.channel, m.created_at, m.error
FROM messages m WHERE m.campaign_id = $1 AND m.contact_id = $2
ORDER BY m.created_at, m.direction = 'out', m.id LIMIT 500
"""
_SENT_TO_CONTACT = f"""
SELECT d.id, 'out' AS direction, 'campaign' AS author, d.rendered AS body, d.channel, d.sent_at AS created_at,
       NULL::text AS error
FROM deliveries d WHERE {CAMPAIGN_SENDS.format(campaign="$1", contact="$2")}
ORDER BY d.sent_at LIMIT 50
"""  # noqa: S608 (constants)
_INLINE_ADDRESSES = """
SELECT CASE WHEN $2 = 'email' THEN c.email ELSE coalesce(c.phone, c.email) END AS address
FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 ORDER BY r.position LIMIT $3
"""
_CONTACT_HISTORY = """
SELECT d.id, d.campaign_id, k.name AS campaign_name, d.channel, d.state, d.send_at, d.sent_at,
       d.delivered_at, d.replied_at, d.failed_at, d.error, d.rendered
FROM deliveries d JOIN campaigns k ON k.id = d.campaign_id
WHERE d.account_id = $1 AND d.contact_id = $2
ORDER BY d.send_at DESC, d.id DESC LIMIT $3
"""
_CONTACT_MESSAGES = """
SELECT m.id, m.campaign_id, m.direction, m.author, m.body, m.channel, m.created_at, m.error
FROM messages m WHERE m.account_id = $1 AND m.contact_id = $2
ORDER BY m.created_at DESC, m.direction = 'out' DESC, m.id DESC LIMIT $3
"""


async def buckets(conn: Executor, campaign_id: str, width_s: int, since: datetime) -> list[asyncpg.Record]:
    """Sends, deliveries and replies per `width_s`-second bucket from `since` (bucket starts aligned on it)."""
    return await conn.fetch(_BUCKETS, campaign_id, width_s, since)


async def waiting(conn: Executor, campaign_id: str, now: datetime) -> asyncpg.Record:
    """Deliveries planned for later than `now`: how many, the first instant, and how many of them
    wait for their sending window or for legal quiet hours, with when the first of each opens."""
    row = await conn.fetchrow(_WAITING, campaign_id, now)
    assert row is not None  # an aggregate: always one row
    return row


async def conversations(conn: Executor, campaign_id: str, limit: int = 200) -> list[asyncpg.Record]:
    """The contacts with messages in the campaign, most recent first, with their counts: all their
    messages, those from the contact, and their sends replied to as the results count them."""
    return await conn.fetch(_CONVERSATIONS, campaign_id, limit)


async def conversation(conn: Executor, campaign_id: str, contact_id: str) -> list[asyncpg.Record]:
    """One contact's messages in the campaign, oldest first (`error`: why one was not sent)."""
    return await conn.fetch(_CONVERSATION, campaign_id, contact_id)


async def sent_to_contact(conn: Executor, campaign_id: str, contact_id: str) -> list[asyncpg.Record]:
    """What the campaign sent the contact (each run's message), as messages out, oldest first; not
    a call's opening already recorded as the agent's first message on the call."""
    return await conn.fetch(_SENT_TO_CONTACT, campaign_id, contact_id)


async def inline_addresses(conn: Executor, campaign_id: str, channel: str, limit: int = 10_000) -> list[str]:
    """The addresses of the contacts named inline in a campaign, in their order."""
    return [r["address"] for r in await conn.fetch(_INLINE_ADDRESSES, campaign_id, channel, limit) if r["address"]]


async def contact_history(conn: Executor, account_id: str, contact_id: str, limit: int = 100) -> list[asyncpg.Record]:
    """A contact's deliveries across every campaign, newest first."""
    return await conn.fetch(_CONTACT_HISTORY, account_id, contact_id, limit)


async def contact_messages(conn: Executor, account_id: str, contact_id: str, limit: int = 100) -> list[asyncpg.Record]:
    """A contact's messages in and out across every campaign, newest first (`error`: why one was
    not sent)."""
    return await conn.fetch(_CONTACT_MESSAGES, account_id, contact_id, limit)
