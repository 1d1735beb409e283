"""0027: the zones stored under a name that is no IANA zone (the old check let them in) are renamed
to the zone each read, on the real PostgreSQL."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db.migrate import available, drop_database, migrate

#: What was stored, and what it reads after 0027.
RENAMED = {
    "localtime": "UTC",
    "Factory": "UTC",
    "posixrules": "America/New_York",
    "posix/America/New_York": "America/New_York",
    "right/UTC": "UTC",
    "right/Asia/Kolkata": "Asia/Kolkata",
    "posix/Factory": "UTC",
    "Asia/Calcutta": "Asia/Calcutta",  # an old name, but a zone: kept
    "Europe/Paris": "Europe/Paris",
}


async def test_zone_names_that_are_no_zones_are_renamed_to_the_zone_they_read(infra):
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/campaigns_zones_{uuid.uuid4().hex[:8]}"))
    [renaming] = [m for m in available() if m.version == 27]
    try:
        await migrate(url)  # (0027 included: on an empty database it changes nothing)
        conn = await asyncpg.connect(url)
        try:
            # Given an account, a campaign and a contact stored with each name
            for n, stored in enumerate(RENAMED):
                await conn.execute("INSERT INTO accounts (id, name, default_timezone) VALUES ($1, 'z', $2)",
                                   f"acct_{n}", stored)
                await conn.execute("INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'a')",
                                   f"agent_{n}", f"acct_{n}")
                await conn.execute(
                    "INSERT INTO campaigns (id, account_id, name, agent_id, channel, timezone)"
                    " VALUES ($1, $2, 'c', $3, 'sms', $4)", f"cmp_{n}", f"acct_{n}", f"agent_{n}", stored)
                await conn.execute("INSERT INTO contacts (id, account_id, phone, timezone) VALUES ($1, $2, $3, $4)",
                                   f"ct_{n}", f"acct_{n}", f"+1415555{n:04d}", stored)
            await conn.execute("INSERT INTO contacts (id, account_id, phone) VALUES ('ct_none', 'acct_0', '+1')")
            # When 0027 runs
            await conn.execute(renaming.sql)
            # Then each reads the zone it stood for, and a contact without a zone has none still
            for n, (stored, renamed) in enumerate(RENAMED.items()):
                zones = await conn.fetchrow(
                    "SELECT a.default_timezone, c.timezone AS campaign, ct.timezone AS contact FROM accounts a"
                    " JOIN campaigns c ON c.account_id = a.id JOIN contacts ct ON ct.account_id = a.id"
                    " WHERE a.id = $1 AND ct.id = $2", f"acct_{n}", f"ct_{n}")
                assert tuple(zones) == (renamed, renamed, renamed), stored
            assert await conn.fetchval("SELECT timezone FROM contacts WHERE id = 'ct_none'") is None
        finally:
            await conn.close()
    finally:
        await drop_database(url)


async def test_metadata_naming_an_opt_out_is_removed_and_the_opt_outs_stay(infra):
    # 0028: `opted_out` kept as a metadata variable (the API let it in) goes; the real opt-out stays
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/campaigns_optout_{uuid.uuid4().hex[:8]}"))
    [removing] = [m for m in available() if m.version == 28]
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO accounts (id, name) VALUES ('acct_o', 'o')")
            await conn.execute(
                "INSERT INTO contacts (id, account_id, phone, metadata, opted_out_sms) VALUES"
                " ('ct_a', 'acct_o', '+14155550001', '{\"opted_out\": false, \"plan\": \"gold\"}', true),"
                " ('ct_b', 'acct_o', '+14155550002', '{\"opted_out_email\": true}', false),"
                " ('ct_c', 'acct_o', '+14155550003', '{\"plan\": \"basic\"}', false)")
            await conn.execute(removing.sql)
            rows = {r["id"]: (r["metadata"], r["opted_out_sms"]) for r in await conn.fetch(
                "SELECT id, metadata::text AS metadata, opted_out_sms FROM contacts ORDER BY id")}
            assert rows == {"ct_a": ('{"plan": "gold"}', True), "ct_b": ("{}", False),
                            "ct_c": ('{"plan": "basic"}', False)}
        finally:
            await conn.close()
    finally:
        await drop_database(url)
