"""The conversation an agent is given, at the real PostgreSQL: the campaign's message first, then
what was said, and only the latest `HISTORY_MAX` of a long one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.db import tracking
from shared.ids import new_id
from tests.conftest import make_account


async def test_a_long_conversation_is_handed_over_as_its_latest_messages_in_order(db):
    # Given a contact the campaign texted, who then exchanged 150 messages with its agent
    account = await make_account(db)
    agent, campaign, contact = new_id("agent"), new_id("campaign"), new_id("contact")
    await db.execute("INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'Riley')", agent, account.id)
    await db.execute(
        "INSERT INTO campaigns (id, account_id, name, agent_id, channel, status, timezone)"
        " VALUES ($1, $2, 'long', $3, 'sms', 'running', 'UTC')", campaign, account.id, agent)
    await db.execute(
        "INSERT INTO contacts (id, account_id, phone) VALUES ($1, $2, '+14155550100')", contact, account.id)
    run = new_id("run")
    await db.execute("INSERT INTO runs (id, campaign_id, account_id, seq, status) VALUES ($1, $2, $3, 1, 'planned')",
                     run, campaign, account.id)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    await db.execute(
        "INSERT INTO deliveries (id, run_id, campaign_id, account_id, contact_id, channel, to_address, state,"
        " send_at, sent_at, rendered) VALUES ($1, $2, $3, $4, $5, 'sms', '+14155550100', 'sent', $6, $6, 'Hi there')",
        new_id("delivery"), run, campaign, account.id, contact, start)
    await db.executemany(
        "INSERT INTO messages (id, account_id, contact_id, campaign_id, channel, direction, body, author, created_at)"
        " VALUES ($1, $2, $3, $4, 'sms', $5, $6, $7, $8)",
        [(new_id("message"), account.id, contact, campaign, "in" if k % 2 == 0 else "out", f"message {k}",
          "contact" if k % 2 == 0 else "agent", start + timedelta(minutes=k + 1)) for k in range(150)],
    )
    # When the agent's conversation is read
    history = await tracking.history(db, contact, campaign)
    # Then it is the latest HISTORY_MAX, oldest first, ending with the last thing said
    assert len(history) == tracking.HISTORY_MAX == 100
    assert [h["body"] for h in history] == [f"message {k}" for k in range(50, 150)]
    # and a short one starts with the campaign's own message
    await db.execute("DELETE FROM messages WHERE campaign_id = $1 AND body <> 'message 0'", campaign)
    assert [(h["author"], h["body"]) for h in await tracking.history(db, contact, campaign)] == [
        ("campaign", "Hi there"), ("contact", "message 0")]
