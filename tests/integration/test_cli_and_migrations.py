"""The `campaigns` command line and the migrations, on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from shared.db.accounts import account_for_key, account_for_session, start_session
from shared.db.migrate import available, drop_database, migrate
from tests.conftest import _drop_topology, own_database
from tests.support import ROOT, free_port, new_phone, wait_until


def campaigns(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )


def _utc_second(instant: datetime) -> str:
    """A time as the API and the command line write it: `2026-03-10T09:00:00Z`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_command_has_help():
    for command in ([], ["migrate"], ["api"], ["scheduler"], ["dispatcher"], ["tracker"], ["up"],
                    ["sandbox"], ["accounts", "create"], ["accounts", "list"], ["accounts", "credit"],
                    ["accounts", "keys", "create"], ["accounts", "keys", "list"], ["accounts", "keys", "revoke"]):
        result = campaigns(*command, "--help", env={})
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage:" in result.stdout


def test_a_dlq_limit_is_a_plain_count_of_one_or_more():
    for limit in ("1_000", " 5", "0", "-1", "1e2"):
        result = campaigns("dlq", "list", "--queue", "dispatch.sms", "--limit", limit, env={})
        assert result.returncode == 2, (limit, result.stderr)
        assert "Invalid value for '--limit'" in result.stderr, result.stderr


def test_dispatcher_needs_a_valid_channel():
    result = campaigns("dispatcher", "--channel", "fax", env={})
    assert result.returncode == 2
    assert "fax" in result.stderr


async def test_accounts_create_prints_the_account_and_a_working_key(infra, db):
    result = campaigns("accounts", "create", "--name", "Acme", "--balance", "42.5",
                       env={"CAMPAIGNS_DATABASE_URL": infra.database_url})
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"account_id", "api_key"}
    account = await account_for_key(db, created["api_key"])
    assert account["id"] == created["account_id"]
    assert str(account["balance"]) == "42.5000"
    stored = await db.fetchval("SELECT key_hash FROM api_keys WHERE account_id = $1", created["account_id"])
    assert created["api_key"].encode() not in bytes(stored)  # only a hash is kept
    # Refused before anything is written: one line saying why, exit code 1.
    before = await db.fetchval("SELECT count(*) FROM accounts")
    for args, says in (
        (["--name", "x", "--balance", "99999999999"], "at most"),
        (["--name", "  "], "name must not be empty"),
        (["--name", "x", "--timezone", "Mars/Base"], "'Mars/Base' is not an IANA time zone name"),
    ):
        bad = campaigns("accounts", "create", *args, env={"CAMPAIGNS_DATABASE_URL": infra.database_url})
        assert (bad.returncode, says in bad.stderr) == (1, True), (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    # A balance that is not plainly written is a usage error naming the option (exit code 2)
    for balance in ("lots", "-10", "1.00001", "1e2", "1_000", " 5", "+5"):
        bad = campaigns("accounts", "create", "--name", "x", "--balance", balance,
                        env={"CAMPAIGNS_DATABASE_URL": infra.database_url})
        assert bad.returncode == 2, (balance, bad.stderr)
        assert f"Invalid value for '--balance': {balance!r} is not an amount" in bad.stderr, bad.stderr
    assert await db.fetchval("SELECT count(*) FROM accounts") == before


async def test_an_operator_lists_accounts_credits_a_balance_and_issues_and_revokes_keys(infra, db):
    env = {"CAMPAIGNS_DATABASE_URL": infra.database_url}
    created = json.loads(campaigns("accounts", "create", "--name", "Ops", "--balance", "10", env=env).stdout)
    account_id, first_key = created["account_id"], created["api_key"]

    listed = [json.loads(line) for line in campaigns("accounts", "list", env=env).stdout.splitlines()]
    ours = next(a for a in listed if a["account_id"] == account_id)
    assert ours | {"created_at": None} == {"account_id": account_id, "name": "Ops", "balance": "10.0000",
                                            "reserved": "0.0000", "default_timezone": "Asia/Kolkata", "keys": 1,
                                            "created_at": None}
    created_at = await db.fetchval("SELECT created_at FROM accounts WHERE id = $1", account_id)
    assert ours["created_at"] == _utc_second(created_at)  # as the API writes times, not 09:00:00.123456+00:00

    credited = campaigns("accounts", "credit", account_id, "25.5", env=env)
    assert credited.returncode == 0, credited.stderr
    assert json.loads(credited.stdout) == {"account_id": account_id, "balance": "35.5000"}
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account_id) == Decimal("35.5")
    for amount, says in (("0", "above 0"), ("99999999999", "exceed")):
        refused = campaigns("accounts", "credit", account_id, amount, env=env)
        assert (refused.returncode, says in refused.stderr) == (1, True), (amount, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # Only a plain decimal is an amount (digits, at most 4 decimals after a point): anything
    # Decimal() would also read (an exponent, underscores, spaces, a sign, a fifth decimal, other
    # digits than ASCII) is a usage error naming AMOUNT, exit code 2
    for amount in ("1e2", "1_000", " 5", "5 ", "5.00000", "0.00001", "+5", "-5", "lots", "\u0665", ".5", "5."):
        refused = campaigns("accounts", "credit", account_id, amount, env=env)
        assert refused.returncode == 2, (amount, refused.stderr)
        assert f"Invalid value for 'AMOUNT': {amount!r} is not an amount" in refused.stderr, refused.stderr
    unknown = campaigns("accounts", "credit", "acct_unknown", "5", env=env)
    assert unknown.returncode == 1
    assert "no account acct_unknown" in unknown.stderr
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account_id) == Decimal("35.5")

    issued = json.loads(campaigns("accounts", "keys", "create", account_id, env=env).stdout)
    second_key = issued["api_key"]
    assert (await account_for_key(db, second_key))["id"] == account_id
    assert (await account_for_key(db, first_key))["id"] == account_id  # the others keep working
    session = await start_session(db, second_key, 3600)
    keys = [json.loads(line) for line in campaigns("accounts", "keys", "list", account_id, env=env).stdout.splitlines()]
    assert [k["prefix"] for k in keys] == [first_key[:8], second_key[:8]]
    assert all(k["revoked_at"] is None for k in keys)
    made = await db.fetch("SELECT created_at FROM api_keys WHERE account_id = $1 ORDER BY created_at", account_id)
    assert [k["created_at"] for k in keys] == [_utc_second(r["created_at"]) for r in made]
    assert second_key not in json.dumps(keys)

    revoked = campaigns("accounts", "keys", "revoke", account_id, second_key[:8], env=env)
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = await db.fetchval(
        "SELECT revoked_at FROM api_keys WHERE account_id = $1 AND prefix = $2", account_id, second_key[:8]
    )
    assert json.loads(revoked.stdout) == {"prefix": second_key[:8], "created_at": keys[1]["created_at"],
                                          "revoked_at": _utc_second(revoked_at)}
    assert await account_for_key(db, second_key) is None
    assert await account_for_session(db, session) is None  # its dashboard sessions end with it
    assert (await account_for_key(db, first_key))["id"] == account_id
    again = campaigns("accounts", "keys", "revoke", account_id, second_key[:8], env=env)
    assert again.returncode == 1
    assert "no live key" in again.stderr
    # a key of another account is not this account's to revoke
    other = json.loads(campaigns("accounts", "create", "--name", "Other", env=env).stdout)
    foreign = campaigns("accounts", "keys", "revoke", account_id, other["api_key"], env=env)
    assert foreign.returncode == 1
    assert (await account_for_key(db, other["api_key"]))["id"] == other["account_id"]
    # two live keys with one prefix: the whole key is needed
    await db.execute("UPDATE api_keys SET prefix = 'sk_same' WHERE account_id = $1", account_id)
    await db.execute("UPDATE api_keys SET revoked_at = NULL WHERE account_id = $1", account_id)
    ambiguous = campaigns("accounts", "keys", "revoke", account_id, "sk_same", env=env)
    assert ambiguous.returncode == 1
    assert "give the whole key" in ambiguous.stderr
    assert campaigns("accounts", "keys", "revoke", account_id, first_key, env=env).returncode == 0
    assert await account_for_key(db, first_key) is None
    assert (await account_for_key(db, second_key))["id"] == account_id


async def test_migrate_creates_the_database_is_idempotent_and_safe_concurrently(infra):
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/campaigns_mig_{uuid.uuid4().hex[:8]}"))
    try:
        results = await asyncio.gather(migrate(url), migrate(url), migrate(url))
        assert sorted(len(r) for r in results) == [0, 0, len(available())]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
            tables = {
                r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        finally:
            await conn.close()
        assert versions == [m.version for m in available()]
        assert {"accounts", "api_keys", "agents", "contacts", "campaigns", "deliveries", "outbox",
                "processed_messages", "webhook_events"} <= tables
    finally:
        await drop_database(url)


async def test_contacts_keep_to_existing_accounts_without_a_per_row_foreign_key(db):
    """0006 checks a contact's account once per statement; the guarantees stay a foreign key's."""
    account = await db.fetchval(
        "INSERT INTO accounts (id, name) VALUES ($1, 'fk') RETURNING id", f"acct_{uuid.uuid4().hex[:16]}"
    )
    insert = "INSERT INTO contacts (id, account_id, phone) SELECT $1 || n, $2, $3 || n FROM generate_series(1, 3) n"
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="account acct_nobody does not exist"):
        await db.execute(insert, "ct_fk_", "acct_nobody", "+1555000")
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = 'acct_nobody'") == 0
    await db.execute(insert, "ct_fk_", account, "+1555000")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="cannot move"):
        await db.execute("UPDATE contacts SET account_id = 'acct_other' WHERE id = 'ct_fk_1'")
    await db.execute("UPDATE contacts SET first_name = 'Ann' WHERE id = 'ct_fk_1'")  # other columns change freely
    await db.execute("DELETE FROM accounts WHERE id = $1", account)
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE id LIKE 'ct_fk_%'") == 0


def test_up_with_its_ports_taken_says_so_and_exits_at_once(infra):
    # the API's and the tracker's ports are taken (another `campaigns up`): a clear error and exit
    # 1, not a banner over a system half up, nor a process that hangs: each service that had
    # started its background work (the tracker's webhook sender, holding a database connection)
    # stops it, so its pool closes at once, with no warnings while it waits
    prefix = f"{infra.prefix}upbusy."
    try:
        with socket.socket() as api, socket.socket() as tracker:
            for taken in (api, tracker):
                taken.bind(("127.0.0.1", 0))
                taken.listen()
            ports = [taken.getsockname()[1] for taken in (api, tracker)]
            result = campaigns("up", env={
                "CAMPAIGNS_DATABASE_URL": infra.database_url, "CAMPAIGNS_AMQP_URL": infra.amqp_url,
                "CAMPAIGNS_AMQP_PREFIX": prefix, "CAMPAIGNS_API_PORT": str(ports[0]),
                "CAMPAIGNS_TRACKER_PORT": str(ports[1]), "CAMPAIGNS_SANDBOX_PORT": str(free_port()),
                "CAMPAIGNS_SANDBOX_SMTP_PORT": str(free_port()),
            })
    finally:
        asyncio.run(asyncio.wait_for(_drop_topology(infra.amqp_url, prefix), 60))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the system did not start" in result.stderr
    for port in ports:
        assert f"'127.0.0.1', {port}" in result.stderr
    assert "Campaigns is up" not in result.stdout
    for symptom in ("pool.close_timeout", "round_failed", "listen.failed"):
        assert symptom not in result.stderr, result.stderr[-3000:]


def test_a_database_or_broker_out_of_reach_is_one_line_naming_it(infra):
    # nothing listens on `port`: each command exits 1 with one line naming what it could not reach,
    # where, and the setting to check; no traceback, and no password from the URL
    port = free_port()
    database = f"postgresql://bob:s3cret@127.0.0.1:{port}/campaigns"
    broker = f"amqp://guest:s3cret@127.0.0.1:{port}/"
    cases = [
        (["migrate"], {"CAMPAIGNS_DATABASE_URL": database}, "PostgreSQL", "CAMPAIGNS_DATABASE_URL"),
        (["api"], {"CAMPAIGNS_DATABASE_URL": database}, "PostgreSQL", "CAMPAIGNS_DATABASE_URL"),
        (["up"], {"CAMPAIGNS_DATABASE_URL": database, **{f"CAMPAIGNS_{name}_PORT": str(free_port()) for name in (
            "API", "TRACKER", "SANDBOX", "SANDBOX_SMTP")}}, "PostgreSQL", "CAMPAIGNS_DATABASE_URL"),  # (ports free)
        (
            ["dispatcher", "--channel", "sms"],
            {"CAMPAIGNS_DATABASE_URL": infra.database_url, "CAMPAIGNS_AMQP_URL": broker},
            "RabbitMQ",
            "CAMPAIGNS_AMQP_URL",
        ),
    ]
    for command, env, service, setting in cases:
        result = campaigns(*command, env={"CAMPAIGNS_METRICS_PORT": "0", **env})
        assert result.returncode == 1, (command, result.stderr[-2000:])
        assert f"Error: cannot reach {service} at 127.0.0.1:{port}" in result.stderr, (command, result.stderr[-2000:])
        assert f"({setting})" in result.stderr
        assert "Traceback" not in result.stderr, (command, result.stderr[-2000:])
        assert "s3cret" not in result.stderr


def test_up_stopped_mid_campaign_drains_into_its_sandbox(infra, tmp_path):
    # Ctrl-C while a campaign sends: the dispatchers drain what they hold while the sandbox's Twilio
    # still answers (it stops after them, the tracker last), so no delivery is left waiting a retry
    # interval as "cannot reach twilio", and each send's callbacks reach the tracker
    prefix = f"{infra.prefix}upstop."
    ports = {name: free_port() for name in ("API", "TRACKER", "SANDBOX", "SANDBOX_SMTP")}
    with own_database(infra, "upstop") as url:
        env = {
            **os.environ, "CAMPAIGNS_DATABASE_URL": url, "CAMPAIGNS_AMQP_URL": infra.amqp_url,
            "CAMPAIGNS_AMQP_PREFIX": prefix, **{f"CAMPAIGNS_{name}_PORT": str(port) for name, port in ports.items()},
        }
        log = (tmp_path / "up.log").open("w")
        up = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--name", "stopper"], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        try:
            key = _printed_key(up)
            campaign_id = asyncio.run(_launch_and_wait_for_sends(f"http://127.0.0.1:{ports['API']}", key))
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=90) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
            asyncio.run(asyncio.wait_for(_drop_topology(infra.amqp_url, prefix), 60))
            log.close()
        states = asyncio.run(_states(url, campaign_id))
    # Each service's log lines name it, as its own process's would (not "up").
    lines = [json.loads(line) for line in (tmp_path / "up.log").read_text().splitlines() if line.startswith("{")]
    by_event = {line["event"]: line["service"] for line in lines}
    assert by_event["api.listening"] == "api"
    assert by_event["tracker.listening"] == "tracker"
    assert {line["service"] for line in lines if line["event"] == "dispatcher.started"} >= {
        "dispatcher-sms", "dispatcher-email", "dispatcher-voice"}
    assert {line["service"] for line in lines} >= {"scheduler", "sandbox"}
    assert states["errors"] == 0, states
    assert states["planned"] + states["queued"] + states["sending"] + states["sent"] + states["delivered"] == 600
    assert states["delivered"] >= states["sent_at_stop"], states  # every send's callbacks came in


async def test_a_second_up_starts_nothing_and_names_the_busy_ports(infra, db):
    # Given the ports of a `campaigns up` already running (held here)
    holders = []
    for _ in range(4):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        holders.append(holder)
    ports = [h.getsockname()[1] for h in holders]
    prefix = f"{infra.prefix}second_up."
    env = {
        "CAMPAIGNS_DATABASE_URL": infra.database_url, "CAMPAIGNS_AMQP_URL": infra.amqp_url,
        "CAMPAIGNS_AMQP_PREFIX": prefix, "CAMPAIGNS_LOG_LEVEL": "info",
        **{f"CAMPAIGNS_{name}_PORT": str(port)
           for name, port in zip(("API", "TRACKER", "SANDBOX", "SANDBOX_SMTP"), ports, strict=True)},
    }
    accounts = await db.fetchval("SELECT count(*) FROM accounts")
    try:
        # When another `up` starts
        second = await asyncio.to_thread(campaigns, "up", "--name", "second", env=env)
    finally:
        for holder in holders:
            holder.close()
        await asyncio.wait_for(_drop_topology(infra.amqp_url, prefix), 60)

    # Then it ends at once, exit code 1, with one line naming each busy port: no service was
    # started (no consumer on the shared queues), no error logged, no account or key made
    assert second.returncode == 1, second.stderr[-3000:]
    assert second.stderr.splitlines() == [second.stderr.strip()], second.stderr[-3000:]
    assert second.stderr.startswith("Error: the system did not start: "), second.stderr
    for port in ports:
        assert f"('127.0.0.1', {port}): address already in use" in second.stderr
    assert "(another `campaigns up` running? Ports: CAMPAIGNS_API_PORT" in second.stderr
    assert second.stdout == ""
    assert await db.fetchval("SELECT count(*) FROM accounts") == accounts


def _printed_key(up: subprocess.Popen[str]) -> str:
    assert up.stdout is not None
    banner = []
    for line in up.stdout:  # (ends when `up` exits: a failed start fails the test below)
        banner.append(line)
        if "API key:" in line:
            # the banner names the dashboard, and the account's balance with how to add to it
            assert any(line.strip().startswith("Dashboard: http://127.0.0.1:") for line in banner), banner
            assert any("balance 100.0000 (to add to it: campaigns accounts credit acct_" in line for line in banner)
            return line.split("API key:")[1].strip()
    raise AssertionError(f"`campaigns up` exited with {up.wait()} before printing a key")


async def _launch_and_wait_for_sends(api: str, key: str) -> str:
    """A running campaign of 600 contacts, 2 sends at a time: returns once some are sent and most
    are not (so that the dispatchers hold deliveries when `up` is stopped)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        # its contacts are Californian: legal quiet hours (on for `up`'s account) would hold them
        # back for half of the day
        async with http.patch(f"{api}/account", json={"quiet_hours": False}) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{api}/agents", json={"name": "R", "instructions": "x", "opening_message": "Hi"}) as r:
            agent = await r.json()
        body = {"name": "stop me", "agent_id": agent["id"], "type": "sms", "message_template": "Hi {{phone}}",
                "max_concurrent": 2, "status": "scheduled", "contacts": [new_phone() for _ in range(600)]}
        async with http.post(f"{api}/campaigns", json=body) as r:
            assert r.status == 201, await r.text()
            campaign_id = (await r.json())["id"]

        async def some_sent() -> bool:
            async with http.get(f"{api}/campaigns/{campaign_id}/results") as r:
                results = await r.json()
            assert results["pending"] > 0, "the campaign ended before `up` was stopped"
            return bool(results["sent"] >= 20)

        await wait_until(some_sent, timeout=60, interval=0.01, message="sends under way")
        return str(campaign_id)


async def _states(url: str, campaign_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM deliveries WHERE campaign_id = $1 GROUP BY state",
                                campaign_id)
        errors = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND error IS NOT NULL", campaign_id
        )
        sent = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND provider_id IS NOT NULL", campaign_id
        )
    finally:
        await conn.close()
    states = dict.fromkeys(("planned", "queued", "sending", "sent", "delivered"), 0)
    states |= {r["state"]: r["n"] for r in rows}
    return {**states, "errors": errors, "sent_at_stop": sent}


def test_a_bad_setting_or_a_taken_port_is_one_line_each_not_a_traceback(infra):
    bad = campaigns("scheduler", env={"CAMPAIGNS_RELEASE_BATCH": "0", "CAMPAIGNS_API_PORT": "abc",
                                      "CAMPAIGNS_DATABASE_URL": infra.database_url})
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "Error: bad settings:",
        "  - CAMPAIGNS_API_PORT='abc': Input should be a valid integer, unable to parse string as an integer",
        "  - CAMPAIGNS_RELEASE_BATCH='0': Input should be greater than or equal to 1",
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"CAMPAIGNS_TRACKER_PORT": str(port), "CAMPAIGNS_DATABASE_URL": infra.database_url}
        busy = campaigns("tracker", env=env)
    assert busy.returncode == 1
    assert "Traceback" not in busy.stderr
    assert f"Error: cannot listen: error while attempting to bind on address ('127.0.0.1', {port})" in busy.stderr
