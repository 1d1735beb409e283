"""Benchmark: the CSV exports, beside PostgreSQL writing the same CSV itself.

    .venv/bin/python benchmarks/bench_export.py [--rows 200000]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432) and RabbitMQ
(BENCH_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/; the API's outbox relay connects to it).
Each run creates its own database `campaigns_bench_<random>` and bus prefix `bench_<random>.`, and
removes both at the end.

Set-up (not timed): an account, an agent and a draft SMS campaign through the API; then, in SQL,
--rows contacts (names, email, phone, company, two metadata keys) and one delivered delivery of the
campaign for each (times, provider id, cost, message).

What it measures, each export read whole by one client in this process:
1. ceiling: `COPY (the export's SELECT) TO STDOUT WITH (FORMAT csv, HEADER)` through asyncpg: the
   database writing the same rows as CSV itself, with nothing in between; rows/s;
2. `GET /campaigns/{id}/deliveries.csv` from the API (`python -m shared.cli api`, its own process):
   rows/s and MB/s, the API's CPU a thousand rows and its peak memory (VmHWM);
3. `GET /contacts.csv`, the same, beside its own COPY ceiling.
The ratio of each export to its COPY is the figure to watch; the API's peak memory shows that an
export streams (it should not grow with --rows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from benchmarks.common import SERVER, api_with_account, cpu_seconds, drop_run, remove_logs  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402
from shared.db.pool import connect  # noqa: E402

_CONTACTS = """
INSERT INTO contacts (id, account_id, first_name, last_name, email, phone, company, metadata)
SELECT 'ct_' || lpad(to_hex(g), 16, '0'), $1, 'First' || g, 'Last', 'u' || g || '@example.com',
       '+1415' || lpad(g::text, 7, '0'), 'Acme', jsonb_build_object('plan', 'Pro', 'order', 'A-' || g)
FROM generate_series(1, $2) AS g
"""
_RUN = "INSERT INTO runs (id, campaign_id, account_id, seq) VALUES ($1, $2, $3, 1)"
_DELIVERIES = """
INSERT INTO deliveries (id, run_id, campaign_id, account_id, contact_id, channel, to_address, state, send_at,
                        attempts, provider_id, provider_status, queued_at, sending_at, sent_at, delivered_at,
                        cost, rendered)
SELECT 'dlv_' || lpad(to_hex(g), 16, '0'), $1, $2, $3, 'ct_' || lpad(to_hex(g), 16, '0'), 'sms',
       '+1415' || lpad(g::text, 7, '0'), 'delivered', now(), 1, 'SM' || md5(g::text), 'delivered', now(), now(),
       now(), now(), 0.0079, 'Hi First' || g || ', your Pro plan renews soon. Reply STOP to opt out'
FROM generate_series(1, $4) AS g
"""
# The exports' rows as PostgreSQL would write them itself (the same columns, the same joins).
_COPY_DELIVERIES = """
SELECT d.id, r.seq, d.contact_id, c.first_name, c.last_name, c.email, c.phone, c.company, d.channel,
       d.to_address, d.state, d.attempts, d.send_at, d.queued_at, d.sent_at, d.delivered_at, d.replied_at,
       d.failed_at, d.provider_id, d.provider_status, d.answered_by, d.cost, d.error, d.rendered
FROM deliveries d JOIN runs r ON r.id = d.run_id LEFT JOIN contacts c ON c.id = d.contact_id
WHERE d.campaign_id = '{campaign}' ORDER BY d.id
"""
_COPY_CONTACTS = """
SELECT phone, email, first_name, last_name, company, timezone, metadata ->> 'order', metadata ->> 'plan', id,
       opted_out_sms, opted_out_email, opted_out_voice, created_at
FROM contacts WHERE account_id = '{account}' ORDER BY created_at DESC, id DESC
"""


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def copy_ceiling(dsn: str, query: str) -> tuple[float, int]:
    """Seconds and bytes for PostgreSQL to write `query`'s rows as CSV to this process."""
    conn = await connect(dsn)
    size = 0

    async def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)

    try:
        started = time.perf_counter()
        await conn.copy_from_query(query, output=sink, format="csv", header=True)
        return time.perf_counter() - started, size
    finally:
        await conn.close()


async def download(url: str, headers: dict[str, str], api_pid: int) -> dict[str, Any]:
    """Read an export whole: seconds, bytes, lines, the API's CPU seconds meanwhile."""
    cpu = cpu_seconds(api_pid)
    size = lines = 0
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = time.perf_counter()
        async with http.get(url, headers=headers) as response:
            assert response.status == 200, await response.text()
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": size, "lines": lines, "cpu": cpu_seconds(api_pid) - cpu}


def report(label: str, rows: int, result: dict[str, Any], ceiling: float) -> None:
    rate = rows / result["seconds"]
    print(f"{label:<44} {rate:>10,.0f} rows/s  {result['bytes'] / result['seconds'] / 1e6:6.1f} MB/s  "
          f"{rate / ceiling:6.1%} of COPY  API CPU {result['cpu'] / rows * 1000:.2f} s a thousand rows", flush=True)


async def bench(args: argparse.Namespace) -> int:
    rows = args.rows
    token = secrets.token_hex(4)
    name, prefix = f"campaigns_bench_{token}", f"bench_{token}."
    dsn = f"{SERVER}/{name}"
    print(f"database {name}; {rows:,} contacts and deliveries; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    stoppers: list[Callable[[], Any]] = []
    logs = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        await migrate(dsn)
        api, base, account_id, key = await api_with_account(dsn, prefix, logs, stoppers)
        assert api.process is not None
        conn = await connect(dsn)
        try:
            headers = {"Authorization": f"Bearer {key}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(base + "/agents", json={"name": "Bench"}) as r:
                    agent = await r.json()
                async with http.post(base + "/campaigns", json={
                    "name": "export", "type": "sms", "agent_id": agent["id"], "contacts": ["+14155550100"],
                    "message_template": "Hi"}) as r:
                    campaign = await r.json()
            started = time.perf_counter()
            await conn.execute("DELETE FROM contacts WHERE account_id = $1", account_id)  # the draft's one
            await conn.execute(_CONTACTS, account_id, rows)
            await conn.execute(_RUN, f"run_{token}", campaign["id"], account_id)
            await conn.execute(_DELIVERIES, f"run_{token}", campaign["id"], account_id, rows)
            await conn.execute("ANALYZE contacts; ANALYZE deliveries")
            print(f"set-up: {rows:,} contacts and deliveries written in {time.perf_counter() - started:.1f} s",
                  flush=True)
        finally:
            await conn.close()

        seconds, size = await copy_ceiling(dsn, _COPY_DELIVERIES.format(campaign=campaign["id"]))
        print(f"{'ceiling: COPY of the deliveries export query':<44} {rows / seconds:>10,.0f} rows/s  "
              f"{size / seconds / 1e6:6.1f} MB/s", flush=True)
        result = await download(f"{base}/campaigns/{campaign['id']}/deliveries.csv", headers, api.process.pid)
        assert result["lines"] == rows + 1, result
        report("GET /campaigns/{id}/deliveries.csv", rows, result, rows / seconds)

        seconds, size = await copy_ceiling(dsn, _COPY_CONTACTS.format(account=account_id))
        print(f"{'ceiling: COPY of the contacts export query':<44} {rows / seconds:>10,.0f} rows/s  "
              f"{size / seconds / 1e6:6.1f} MB/s", flush=True)
        result = await download(f"{base}/contacts.csv", headers, api.process.pid)
        assert result["lines"] == rows + 1, result
        report("GET /contacts.csv", rows, result, rows / seconds)
        print(f"API peak memory (VmHWM) {peak_rss_mb(api.process.pid):.0f} MB", flush=True)
        return 0
    finally:
        for stop in reversed(stoppers):
            with contextlib.suppress(Exception):
                stop()
        await drop_run(name, prefix)
        remove_logs(logs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="contacts and deliveries (default 200,000)")
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
