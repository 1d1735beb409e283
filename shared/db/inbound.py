"""Which account an inbound message belongs to, and which delivery it answers: the account that
owns the number (or address) it was sent to, and that account's latest delivery to the sender;
for the platform's shared default sender, the latest delivery sent from it to the sender. An
opt-out keyword acts on the account's contacts with the sender's phone (remembered as a new,
opted-out contact when it has none); one to the shared default sender acts on every account that
has sent to that phone from it."""

from __future__ import annotations

import asyncpg

from shared.db.connection import Connection, Executor

_NUMBER_OWNER = """
SELECT account_id FROM sender_identities WHERE kind = $1 AND address = $2 AND verified_at IS NOT NULL
"""
_LATEST_IN_ACCOUNT = """
SELECT d.id, d.account_id, d.campaign_id, d.contact_id, d.replied_at, d.channel
FROM deliveries d
WHERE d.to_address = $1 AND d.channel = $2 AND d.sent_at IS NOT NULL AND d.account_id = $3
ORDER BY d.sent_at DESC LIMIT 1
FOR UPDATE
"""
#: Sent from the default: the campaign names no sender, or names the default itself.
_LATEST_FROM_DEFAULT = """
SELECT d.id, d.account_id, d.campaign_id, d.contact_id, d.replied_at, d.channel
FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
WHERE d.to_address = $1 AND d.channel = $2 AND d.sent_at IS NOT NULL
  AND (c.from_number IS NULL OR c.from_number = $3)
ORDER BY d.sent_at DESC LIMIT 1
FOR UPDATE OF d
"""
_CONTACT_EXISTS = "SELECT EXISTS (SELECT 1 FROM contacts WHERE id = $1)"
_SET_SMS_OPT_OUT = """
UPDATE contacts SET opted_out_sms = $3, updated_at = now()
WHERE account_id = $1 AND phone = $2 AND opted_out_sms IS DISTINCT FROM $3
"""
# A STOP from a phone the account has no contact for is remembered as an opted-out contact (the
# send path skips it; a campaign's upsert of the phone keeps the opt-out).
_OPT_OUT_SMS = """
INSERT INTO contacts AS c (id, account_id, phone, opted_out_sms) VALUES ($1, $2, $3, true)
ON CONFLICT (account_id, phone) DO UPDATE SET opted_out_sms = true, updated_at = now()
WHERE NOT c.opted_out_sms
"""
#: Every account that has sent SMS to the phone from the shared default sender (as
#: `_LATEST_FROM_DEFAULT` reads "sent from the default"): its contacts with that phone.
_SET_SMS_OPT_OUT_FROM_DEFAULT = """
UPDATE contacts SET opted_out_sms = $3, updated_at = now()
WHERE phone = $1 AND opted_out_sms IS DISTINCT FROM $3
  AND account_id IN (
      SELECT d.account_id FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
      WHERE d.to_address = $1 AND d.channel = 'sms' AND d.sent_at IS NOT NULL
        AND (c.from_number IS NULL OR c.from_number = $2))
"""


async def owner(conn: Executor, kind: str, address: str) -> str | None:
    """The account whose verified sender `address` is (None: no account's)."""
    found: str | None = await conn.fetchval(_NUMBER_OWNER, kind, address)
    return found


async def latest_in_account(conn: Connection, account_id: str, address: str, channel: str) -> asyncpg.Record | None:
    """The account's delivery most recently sent to `address` (row-locked): what a reply answers."""
    return await conn.fetchrow(_LATEST_IN_ACCOUNT, address, channel, account_id)


async def latest_from_default(conn: Connection, address: str, channel: str, default: str) -> asyncpg.Record | None:
    """The delivery most recently sent to `address` from the platform's default sender, whichever
    account's campaign sent it (row-locked)."""
    return await conn.fetchrow(_LATEST_FROM_DEFAULT, address, channel, default)


async def contact_exists(conn: Executor, contact_id: str) -> bool:
    """Whether the contact is still there (a delivery outlives its deleted contact)."""
    return bool(await conn.fetchval(_CONTACT_EXISTS, contact_id))


async def set_sms_opt_out(conn: Executor, account_id: str, phone: str, opted_out: bool) -> int:
    """Opt the account's contacts with `phone` out of SMS (STOP) or back in (START); how many changed."""
    result: str = await conn.execute(_SET_SMS_OPT_OUT, account_id, phone, opted_out)
    return int(result.split()[-1])


async def opt_out_sms(conn: Executor, contact_id: str, account_id: str, phone: str) -> int:
    """Opt the account's contact with `phone` out of SMS (STOP), creating it as `contact_id` when
    the account has none, so that its later campaigns skip the phone; how many changed (0 or 1)."""
    result: str = await conn.execute(_OPT_OUT_SMS, contact_id, account_id, phone)
    return int(result.split()[-1])


async def set_sms_opt_out_from_default(conn: Executor, phone: str, default: str, opted_out: bool) -> int:
    """A keyword sent to the shared default sender: opt `phone` out of SMS (STOP) or back in
    (START) in every account that has sent to it from `default` (the person unsubscribed from
    the number, as a carrier would); how many contacts changed."""
    result: str = await conn.execute(_SET_SMS_OPT_OUT_FROM_DEFAULT, phone, default, opted_out)
    return int(result.split()[-1])
