"""Campaigns, their inline recipients, agents; every query scoped to the caller's account."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg

from shared.db.connection import Connection, Executor
from shared.ids import new_id

_INSERT_AGENT = """
INSERT INTO agents (id, account_id, name, instructions, opening_message, voice, mode, settings)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *
"""
_GET_AGENT = "SELECT * FROM agents WHERE account_id = $1 AND id = $2"
_AGENTS = """
SELECT * FROM agents WHERE account_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
ORDER BY created_at DESC, id DESC LIMIT $4
"""
_UPDATE_AGENT = """
UPDATE agents SET name = $3, instructions = $4, opening_message = $5, voice = $6, mode = $7, settings = $8
WHERE account_id = $1 AND id = $2 RETURNING *
"""
_DELETE_AGENT = "DELETE FROM agents WHERE account_id = $1 AND id = $2 RETURNING id"

_INSERT_CAMPAIGN = """
INSERT INTO campaigns (
    id, account_id, name, description, agent_id, channel, status, message_template,
    subject_template, html_template, template_id, group_ids, timezone, scheduled_at,
    scheduled_wall, sending_window, recurrence, max_concurrent, max_retries, retry_interval,
    from_number, voice, config, circuit_breaker
) VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
          $17, $18, $19, $20, $21, $22, $23)
"""
_UPSERT_PHONE_CONTACTS = """
INSERT INTO contacts (id, account_id, phone, email, first_name, last_name, company, timezone, metadata)
SELECT u.id, $1, u.phone, u.email, u.first_name, u.last_name, u.company, u.timezone, u.metadata
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::jsonb[])
     AS u(id, phone, email, first_name, last_name, company, timezone, metadata)
ON CONFLICT (account_id, phone) DO UPDATE SET
    first_name = COALESCE(EXCLUDED.first_name, contacts.first_name),
    last_name = COALESCE(EXCLUDED.last_name, contacts.last_name),
    company = COALESCE(EXCLUDED.company, contacts.company),
    timezone = COALESCE(EXCLUDED.timezone, contacts.timezone),
    metadata = contacts.metadata || EXCLUDED.metadata,
    updated_at = now()
RETURNING id, phone
"""
_UPSERT_EMAIL_CONTACTS = _UPSERT_PHONE_CONTACTS.replace(
    "ON CONFLICT (account_id, phone)", "ON CONFLICT (account_id, email)"
).replace("RETURNING id, phone", "RETURNING id, email")
_INSERT_RECIPIENTS = """
INSERT INTO campaign_recipients (campaign_id, contact_id, position)
SELECT $1, u.contact_id, u.position FROM unnest($2::text[], $3::int[]) AS u(contact_id, position)
ON CONFLICT DO NOTHING
"""
_COUNT_RECIPIENTS = """
SELECT count(*) FROM (
    SELECT contact_id FROM campaign_recipients WHERE campaign_id = $1
    UNION
    SELECT m.contact_id FROM group_members m JOIN contact_groups g ON g.id = m.group_id
    WHERE g.account_id = $2 AND g.id = ANY($3::text[])
) AS r
"""
_SET_TOTAL = "UPDATE campaigns SET total_contacts = $2 WHERE id = $1"
#: A campaign's contacts counted again (its inline ones and its groups' members now): a launch, and
#: the account's drafts (those using a group, when one is named) once members or contacts change.
_RECOUNT = """
UPDATE campaigns c SET total_contacts = (
    SELECT count(*) FROM (
        SELECT contact_id FROM campaign_recipients WHERE campaign_id = c.id
        UNION
        SELECT m.contact_id FROM group_members m JOIN contact_groups g ON g.id = m.group_id
        WHERE g.account_id = c.account_id AND g.id = ANY(c.group_ids)
    ) AS r
)
WHERE c.account_id = $1
  AND (c.id = $2 OR ($2 IS NULL AND c.status = 'draft' AND ($3::text IS NULL OR $3 = ANY(c.group_ids))))
RETURNING c.total_contacts
"""
_UPDATE_DRAFT = """
UPDATE campaigns SET
    name = $3, description = $4, agent_id = $5, channel = $6, message_template = $7,
    subject_template = $8, html_template = $9, template_id = $10, group_ids = $11, timezone = $12,
    scheduled_at = $13, scheduled_wall = $14, sending_window = $15, recurrence = $16,
    max_concurrent = $17, max_retries = $18, retry_interval = $19, from_number = $20, voice = $21,
    config = $22, circuit_breaker = $23, updated_at = now()
WHERE id = $1 AND account_id = $2 AND status = 'draft'
"""
_DELETE_RECIPIENTS = "DELETE FROM campaign_recipients WHERE campaign_id = $1"
_HAS_RECIPIENTS = "SELECT EXISTS (SELECT 1 FROM campaign_recipients WHERE campaign_id = $1)"
_DELETE_DRAFT = "DELETE FROM campaigns WHERE account_id = $1 AND id = $2 AND status = 'draft'"
_EXISTING_GROUPS = "SELECT id FROM contact_groups WHERE account_id = $1 AND id = ANY($2::text[])"
_GET = "SELECT * FROM campaigns WHERE account_id = $1 AND id = $2"
_GET_FOR_UPDATE = _GET + " FOR NO KEY UPDATE"
_LIST = """
SELECT * FROM campaigns
WHERE account_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR channel = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
ORDER BY created_at DESC, id DESC
LIMIT $6
"""
_SET_STATUS = """
UPDATE campaigns SET status = $3, resume_to = $4, updated_at = now(),
    launched_at = CASE WHEN $3 = 'scheduled' AND launched_at IS NULL THEN now() ELSE launched_at END,
    completed_at = CASE WHEN $3 IN ('cancelled', 'completed') THEN now() ELSE completed_at END
WHERE account_id = $1 AND id = $2 RETURNING *
"""
#: The figures are kept as the deliveries change (migration 0010's triggers): a few rows per run,
#: whatever the campaign's size. A run is planned in chunks: one being planned counts its contacts
#: not planned yet as pending, and one cut while it was (cancelled with its cursor kept) counts them
#: as cancelled, so a run always counts the campaign's contacts (`total_contacts`, as at launch). A
#: campaign cancelled before its first run began counts them all as cancelled.
_DELIVERY_COUNTS = """
WITH counted AS (
    SELECT campaign_id, run_id,
           sum(planned + queued + sending + sent + delivered + undelivered + failed + cancelled + skipped)::int
               AS total,
           sum(with_sent_at)::int AS sent,
           sum(with_delivered_at)::int AS delivered,
           sum(replied)::int AS replied,
           sum(failed)::int AS failed,
           sum(planned + queued + sending)::int AS pending,
           sum(skipped)::int AS skipped,
           sum(cancelled)::int AS cancelled,
           sum(undelivered)::int AS undelivered,
           sum(response_sum) AS response_sum,
           sum(response_n) AS response_n
    FROM delivery_counts WHERE campaign_id = ANY($1::text[]) AND ($2::text IS NULL OR run_id = $2)
    GROUP BY campaign_id, run_id
), unplanned AS (
    SELECT r.campaign_id, r.status = 'planning' AS open,
           GREATEST(c.total_contacts - COALESCE(n.total, 0), 0) AS rest
    FROM runs r JOIN campaigns c ON c.id = r.campaign_id
    LEFT JOIN counted n ON n.run_id = r.id
    WHERE r.campaign_id = ANY($1::text[]) AND ($2::text IS NULL OR r.id = $2)
      AND (r.status = 'planning' OR (r.status = 'cancelled' AND r.planned_through IS NOT NULL))
    UNION ALL  -- launched, then cancelled before the scheduler began its first run: all cancelled
    SELECT c.id, false, c.total_contacts FROM campaigns c
    WHERE c.id = ANY($1::text[]) AND $2::text IS NULL AND c.status = 'cancelled' AND c.launched_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.campaign_id = c.id)
), every AS (
    SELECT campaign_id, total, sent, delivered, replied, failed, pending, skipped, cancelled, undelivered,
           response_sum, response_n
    FROM counted
    UNION ALL
    SELECT campaign_id, rest, 0, 0, 0, 0, CASE WHEN open THEN rest ELSE 0 END, 0, CASE WHEN open THEN 0 ELSE rest END,
           0, 0, 0
    FROM unplanned
)
SELECT campaign_id,
       sum(total)::int AS total,
       sum(sent)::int AS sent,
       sum(delivered)::int AS delivered,
       sum(replied)::int AS replied,
       sum(failed)::int AS failed,
       sum(pending)::int AS pending,
       sum(skipped)::int AS skipped,
       sum(cancelled)::int AS cancelled,
       sum(undelivered)::int AS undelivered,
       sum(response_sum) / NULLIF(sum(response_n), 0) AS response_seconds
FROM every
GROUP BY campaign_id
"""
_DELIVERIES = """
SELECT d.id, d.run_id, r.seq, d.contact_id, d.to_address, d.state, d.send_at, d.plan_reason,
       d.attempts, d.provider_id, d.provider_status, d.rendered, d.error, d.queued_at, d.sent_at,
       d.delivered_at, d.replied_at, d.failed_at, d.created_at, d.answered_by, d.cost
FROM deliveries d JOIN runs r ON r.id = d.run_id
WHERE d.campaign_id = $1
  AND ($2::text IS NULL OR d.state = $2)
  AND ($3::text IS NULL OR d.id > $3)
  AND ($5::text IS NULL OR d.to_address = $5)
ORDER BY d.id
LIMIT $4
"""
# The export's rows: a page of deliveries by id first (the (campaign_id, id) index), then each with
# its run's number and its contact as it is now (none once deleted).
_EXPORT = """
WITH page AS MATERIALIZED (
    SELECT * FROM deliveries d
    WHERE d.campaign_id = $1
      AND ($2::text IS NULL OR d.state = $2)
      AND ($3::text IS NULL OR d.run_id = $3)
      AND ($4::text IS NULL OR d.id > $4)
    ORDER BY d.id
    LIMIT $5
)
SELECT d.id, r.seq, d.contact_id, c.first_name, c.last_name, c.email, c.phone, c.company, d.channel,
       d.to_address, d.state, d.attempts, d.send_at, d.queued_at, d.sent_at, d.delivered_at, d.replied_at,
       d.failed_at, d.provider_id, d.provider_status, d.answered_by, d.cost, d.error, d.rendered
FROM page d JOIN runs r ON r.id = d.run_id LEFT JOIN contacts c ON c.id = d.contact_id
ORDER BY d.id
"""
_RUNS = """
SELECT r.id, r.seq, r.status, r.occurs_at, r.occurs_wall, r.plan_at, r.created_at, r.completed_at
FROM runs r WHERE r.campaign_id = $1 ORDER BY r.seq
"""


async def insert_agent(conn: Connection, account_id: str, data: dict[str, Any]) -> asyncpg.Record:
    """A new agent."""
    row = await conn.fetchrow(
        _INSERT_AGENT,
        new_id("agent"),
        account_id,
        data["name"],
        data["instructions"],
        data["opening_message"],
        data["voice"],
        data["mode"],
        data["settings"],
    )
    return cast(asyncpg.Record, row)  # INSERT … RETURNING: always a row


async def get_agent(conn: Executor, account_id: str, agent_id: str) -> asyncpg.Record | None:
    """One of the account's agents."""
    return await conn.fetchrow(_GET_AGENT, account_id, agent_id)


async def agents_page(conn: Executor, account_id: str, after: Any, limit: int) -> list[asyncpg.Record]:
    """A page of the account's agents, newest first."""
    created, last_id = after if after else (None, None)
    return await conn.fetch(_AGENTS, account_id, created, last_id, limit)


async def update_agent(conn: Executor, account_id: str, agent_id: str, data: dict[str, Any]) -> asyncpg.Record:
    """Replace an agent's fields."""
    row = await conn.fetchrow(
        _UPDATE_AGENT,
        account_id,
        agent_id,
        data["name"],
        data["instructions"],
        data["opening_message"],
        data["voice"],
        data["mode"],
        data["settings"],
    )
    return cast(asyncpg.Record, row)  # the caller found the agent


async def delete_agent(conn: Executor, account_id: str, agent_id: str) -> bool:
    """Delete an agent (ForeignKeyViolationError while campaigns use it); False if none."""
    return await conn.fetchval(_DELETE_AGENT, account_id, agent_id) is not None


async def insert_campaign(conn: Connection, account_id: str, spec: Any) -> str:
    """Insert a draft campaign with its inline recipients (contacts upserted); returns its id."""
    campaign_id = new_id("campaign")
    await conn.execute(_INSERT_CAMPAIGN, *_settings(campaign_id, account_id, spec))
    await _add_recipients(conn, account_id, campaign_id, spec)
    await _count_total(conn, account_id, campaign_id, spec)
    return campaign_id


async def update_draft(conn: Connection, account_id: str, campaign_id: str, spec: Any, recipients: bool) -> None:
    """Replace a draft's settings with `spec` (and its inline recipients too, when `recipients`)."""
    await conn.execute(_UPDATE_DRAFT, *_settings(campaign_id, account_id, spec))
    if recipients:
        await conn.execute(_DELETE_RECIPIENTS, campaign_id)
        await _add_recipients(conn, account_id, campaign_id, spec)
    await _count_total(conn, account_id, campaign_id, spec)  # its groups may have changed too


async def delete_draft(conn: Connection, account_id: str, campaign_id: str) -> None:
    """Delete a draft (its inline recipients go with it; the contacts stay)."""
    await conn.execute(_DELETE_DRAFT, account_id, campaign_id)


async def has_recipients(conn: Connection, campaign_id: str) -> bool:
    """Whether the campaign has inline recipients."""
    return bool(await conn.fetchval(_HAS_RECIPIENTS, campaign_id))


async def _add_recipients(conn: Connection, account_id: str, campaign_id: str, spec: Any) -> None:
    contact_ids = await upsert_contacts(conn, account_id, spec.recipients)
    for start in range(0, len(contact_ids), CHUNK):
        chunk = contact_ids[start : start + CHUNK]
        await conn.execute(_INSERT_RECIPIENTS, campaign_id, chunk, list(range(start, start + len(chunk))))


async def recount(conn: Executor, account_id: str, campaign_id: str) -> int:
    """Count one of the account's campaigns' contacts again (its groups may have changed); the count."""
    return int(await conn.fetchval(_RECOUNT, account_id, campaign_id, None) or 0)


async def recount_drafts(conn: Executor, account_id: str, group_id: str | None = None) -> None:
    """Count the account's drafts' contacts again (only those using `group_id`, when given): their
    `total_contacts` follows their groups and contacts until they are launched."""
    await conn.execute(_RECOUNT, account_id, None, group_id)


async def _count_total(conn: Connection, account_id: str, campaign_id: str, spec: Any) -> None:
    total = await conn.fetchval(_COUNT_RECIPIENTS, campaign_id, account_id, spec.group_ids)
    await conn.execute(_SET_TOTAL, campaign_id, total)


def _settings(campaign_id: str, account_id: str, spec: Any) -> tuple[Any, ...]:
    """The parameters of _INSERT_CAMPAIGN and _UPDATE_DRAFT, in their order."""
    return (
        campaign_id,
        account_id,
        spec.name,
        spec.description,
        spec.agent_id,
        spec.channel,
        spec.message_template,
        spec.subject,
        spec.html_template,
        spec.template_id,
        spec.group_ids,
        spec.timezone,
        spec.scheduled_at,
        spec.scheduled_wall,
        spec.sending_window,
        spec.recurrence,
        spec.max_concurrent,
        spec.max_retries,
        spec.retry_interval,
        spec.from_number,
        spec.voice,
        spec.config,
        spec.circuit_breaker,
    )


#: Inline recipients written per statement.
CHUNK = 5000


async def upsert_contacts(conn: Connection, account_id: str, recipients: Sequence[Any]) -> list[str]:
    """Create or update contacts by phone (or email when they have none); their ids, in order."""
    ids: dict[str, str] = {}
    for key, sql in (("phone", _UPSERT_PHONE_CONTACTS), ("email", _UPSERT_EMAIL_CONTACTS)):
        batch = {}
        for r in recipients:
            value = r.phone if key == "phone" else (None if r.phone else r.email)
            if value is not None:
                batch[value] = r  # the last mention of a contact wins
        if not batch:
            continue
        every = list(batch.values())
        for start in range(0, len(every), CHUNK):  # statements of CHUNK rows: the event loop runs between them
            rows = every[start : start + CHUNK]
            found = await conn.fetch(
                sql,
                account_id,
                [new_id("contact") for _ in rows],
                [r.phone for r in rows],
                [r.email for r in rows],
                [r.fields.get("first_name") for r in rows],
                [r.fields.get("last_name") for r in rows],
                [r.fields.get("company") for r in rows],
                [r.fields.get("timezone") for r in rows],
                [r.metadata for r in rows],
            )
            ids.update({row[key]: row["id"] for row in found})
    ordered = [ids[r.phone] if r.phone else ids[r.email] for r in recipients]
    return list(dict.fromkeys(ordered))


async def missing_groups(conn: Connection, account_id: str, group_ids: list[str]) -> list[str]:
    """The ids among `group_ids` that are not the account's groups."""
    found = {r["id"] for r in await conn.fetch(_EXISTING_GROUPS, account_id, group_ids)}
    return [g for g in group_ids if g not in found]


async def get(conn: Executor, account_id: str, campaign_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """One of the account's campaigns (row-locked inside a transaction when `lock`; inserts that
    reference it are not blocked)."""
    return await conn.fetchrow(_GET_FOR_UPDATE if lock else _GET, account_id, campaign_id)


async def list_page(
    conn: Executor,
    account_id: str,
    *,
    status: str | None,
    channel: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the account's campaigns, newest first, after the cursor `(created_at, id)`."""
    created, last_id = after if after else (None, None)
    return await conn.fetch(_LIST, account_id, status, channel, created, last_id, limit)


async def set_status(
    conn: Connection, account_id: str, campaign_id: str, status: str, resume_to: str | None
) -> asyncpg.Record:
    """Move a campaign to `status`."""
    row = await conn.fetchrow(_SET_STATUS, account_id, campaign_id, status, resume_to)
    return cast(asyncpg.Record, row)  # the caller holds the campaign's row (locked)


async def delivery_counts(
    conn: Executor, campaign_ids: list[str], run_id: str | None = None
) -> dict[str, asyncpg.Record]:
    """Counts of each campaign's deliveries by outcome (of one run only, when given)."""
    return {r["campaign_id"]: r for r in await conn.fetch(_DELIVERY_COUNTS, campaign_ids, run_id)}


async def deliveries_page(
    conn: Executor, campaign_id: str, *, state: str | None, after: str | None, limit: int, to: str | None = None
) -> list[asyncpg.Record]:
    """A page of a campaign's deliveries by id, of one state, to one address (call only for a
    campaign of the caller's account)."""
    return await conn.fetch(_DELIVERIES, campaign_id, state, after, limit, to)


async def export_page(
    conn: Executor, campaign_id: str, *, state: str | None, run_id: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` of a campaign's deliveries (of one state, of one run) after id `after`, by id,
    each with its run's number and its contact's fields (a campaign of the caller's account)."""
    return await conn.fetch(_EXPORT, campaign_id, state, run_id, after, limit)


async def runs(conn: Executor, campaign_id: str) -> list[asyncpg.Record]:
    """A campaign's runs, in order (call only for a campaign of the caller's account)."""
    return await conn.fetch(_RUNS, campaign_id)


_RUNS_PAGE = """
SELECT r.id, r.seq, r.status, r.occurs_at, r.occurs_wall, r.plan_at, r.created_at, r.completed_at
FROM runs r WHERE r.campaign_id = $1 AND r.seq > $2 ORDER BY r.seq LIMIT $3
"""


async def runs_page(conn: Executor, campaign_id: str, after_seq: int, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` of a campaign's runs after run `after_seq`, in order (a campaign of the
    caller's account)."""
    return await conn.fetch(_RUNS_PAGE, campaign_id, after_seq, limit)


#: Contact columns a template may name directly.
_COLUMNS = ("first_name", "last_name", "email", "phone", "company")
_RECIPIENT_IDS = """
    SELECT contact_id FROM campaign_recipients WHERE campaign_id = $2
    UNION
    SELECT m.contact_id FROM group_members m JOIN contact_groups g ON g.id = m.group_id
    WHERE g.account_id = $1 AND g.id = ANY($3::text[])
"""


#: Of a campaign's recipients, how many a message could reach on its channel: opted in, with an
#: address (the others are skipped, at no cost).
_REACHABLE = {
    channel: f"""
SELECT count(*) FROM contacts c
WHERE c.account_id = $1 AND c.id IN ({_RECIPIENT_IDS}) AND NOT c.opted_out_{channel}
  AND NULLIF(c.{"email" if channel == "email" else "phone"}, '') IS NOT NULL
"""  # noqa: S608 (constants)
    for channel in ("sms", "email", "voice")
}


async def reachable(conn: Executor, account_id: str, campaign_id: str, group_ids: list[str], channel: str) -> int:
    """How many of the campaign's contacts its channel can reach (opted in, with an address)."""
    return int(await conn.fetchval(_REACHABLE[channel], account_id, campaign_id, group_ids))


async def missing_variables(
    conn: Executor, account_id: str, campaign_id: str, group_ids: list[str], names: set[str]
) -> dict[str, int]:
    """For each variable a template reads, how many of the campaign's contacts lack it (as
    `templating.contact_context` has them: a null or an empty built-in field is missing, a metadata
    `""` is there)."""
    filters: list[str] = []
    args: list[Any] = [account_id, campaign_id, group_ids]
    wanted = sorted(n for n in names if n != "agent_name")
    for name in wanted:
        args.append(name)
        key = f"${len(args)}"
        lacks_meta = f"coalesce(jsonb_typeof(c.metadata -> {key}), 'null') = 'null'"  # absent or null
        if name in _COLUMNS:
            filters.append(f"count(*) FILTER (WHERE NULLIF(c.{name}, '') IS NULL AND {lacks_meta})")
        elif name == "name":
            nameless = "NULLIF(c.first_name, '') IS NULL AND NULLIF(c.last_name, '') IS NULL"
            filters.append(f"count(*) FILTER (WHERE {nameless} AND {lacks_meta})")
        else:
            filters.append(f"count(*) FILTER (WHERE {lacks_meta})")
    if not filters:
        return {}
    sql = (
        f"SELECT {', '.join(filters)} FROM contacts c "  # noqa: S608 (column names from _COLUMNS, values as parameters)
        f"WHERE c.account_id = $1 AND c.id IN ({_RECIPIENT_IDS})"
    )
    row = cast(asyncpg.Record, await conn.fetchrow(sql, *args))  # an aggregate: always one row
    return {name: row[i] for i, name in enumerate(wanted) if row[i]}
