"""Benchmark: signed SMS status callbacks at the tracker, beside a bare aiohttp handler.

    .venv/bin/python benchmarks/bench_receipts.py [--deliveries 20000] [--concurrency 64]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432); makes its own
database `campaigns_bench_<random>` and drops it at the end.

What it measures:
1. ceiling: a bare aiohttp app in its own process whose one handler reads the form and answers an
   empty TwiML document (what any webhook handler must do, nothing more), measured before and after
   the real run (the ceiling is the mean: the machine may be shared);
2. the real thing: the tracker service (`python -m shared.cli tracker`, its own process) on a
   database holding N SMS deliveries in state `sent`. From this process, with --concurrency
   requests in flight over kept connections, Twilio's two status callbacks per delivery (`sent`,
   then `delivered`), each signed with X-Twilio-Signature as Twilio signs them: callbacks/s, p50
   and p99 latency, and the tracker's and PostgreSQL's CPU per callback;
3. that every callback was committed before its answer: the tracker is SIGKILLed the moment the
   last answer arrives, and every delivery must then be `delivered` in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from benchmarks.common import SERVER, cpu_seconds, remove_logs, wait_answering  # noqa: E402
from shared.db import accounts  # noqa: E402
from shared.db.migrate import drop_database, migrate  # noqa: E402
from shared.db.pool import connect  # noqa: E402
from shared.sandbox.callbacks import CallbackClient  # noqa: E402
from tests.support import Service, free_port  # noqa: E402

TOKEN = "bench-auth-token"  # noqa: S105 (the benchmark's own)
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def bare_server(port: int) -> None:
    """Child process: one handler that reads the form and answers empty TwiML, nothing else."""

    async def handler(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/sms/status", handler)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))  # type: ignore[arg-type, return-value]
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def seed(dsn: str, n: int) -> list[tuple[str, str]]:
    """N SMS deliveries in state `sent` (with Twilio sids), as the dispatchers leave them."""
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            account_id = await accounts.create_account(conn, "bench", 100)
            await conn.execute("INSERT INTO agents (id, account_id, name) VALUES ('ag_bench', $1, 'Riley')", account_id)
            await conn.execute(
                "INSERT INTO campaigns (id, account_id, name, agent_id, channel, status, timezone)"
                " VALUES ('camp_bench', $1, 'receipts', 'ag_bench', 'sms', 'running', 'UTC')", account_id
            )
            await conn.execute(
                "INSERT INTO runs (id, campaign_id, account_id, seq, status) VALUES ('run_bench', 'camp_bench', $1, 1,"
                " 'planned')", account_id
            )
            now = datetime.now(UTC)
            rows = [
                (f"dlv_bench{k:010d}", f"SM{k:032x}", f"+1415{234 + k // 10_000}{k % 10_000:04d}") for k in range(n)
            ]
            await conn.copy_records_to_table(
                "deliveries",
                records=[(d, "run_bench", "camp_bench", account_id, f"ct_{k}", "sms", to, "sent", now, 1, sid, "queued",
                          now, now) for k, (d, sid, to) in enumerate(rows)],
                columns=("id", "run_id", "campaign_id", "account_id", "contact_id", "channel", "to_address", "state",
                         "send_at", "attempts", "provider_id", "provider_status", "sending_at", "sent_at"),
            )
        await conn.execute("VACUUM ANALYZE deliveries")
        return [(d, sid) for d, sid, _ in rows]
    finally:
        await conn.close()


def callbacks(base: str, deliveries: list[tuple[str, str]]) -> list[list[tuple[str, bytes, dict[str, str]]]]:
    """Per delivery, its two status callbacks as Twilio sends them: (url, body, headers)."""
    validator = RequestValidator(TOKEN)
    out = []
    for delivery_id, sid in deliveries:
        url = f"{base}/webhooks/twilio/sms/status?delivery_id={delivery_id}"
        pair = []
        for status in ("sent", "delivered"):
            params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "b" * 32, "From": "+15005550006",
                      "To": "+14155550100", "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01"}
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params),
                       "I-Twilio-Idempotency-Token": f"{sid}-{status}",
                       "Content-Type": "application/x-www-form-urlencoded"}
            pair.append((url, urlencode(params).encode(), headers))
        out.append(pair)
    return out


async def drive(work: list[list[tuple[str, bytes, dict[str, str]]]], concurrency: int, pid: int) -> dict[str, Any]:
    """Post every delivery's callbacks in order (`sent`, then `delivered`), `concurrency` deliveries
    at a time; rate, latency percentiles, failures and the server's CPU."""
    client = CallbackClient(max_per_host=concurrency)
    latencies: list[float] = []
    failures = 0
    queue = iter(work)

    async def worker() -> None:
        nonlocal failures
        for pair in queue:
            for url, body, headers in pair:
                started = time.perf_counter()
                try:
                    status = await client.post(url, body, headers)
                except Exception:
                    status = 0
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1

    try:
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    finally:
        await client.close()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"rate": len(latencies) / seconds, "p50": q[49] * 1000, "p99": q[98] * 1000, "failures": failures,
            "cpu": cpu, "requests": len(latencies), "seconds": seconds}




def _postgres_cpu() -> float:
    from benchmarks.bench_dispatch import cpu_by_command

    return cpu_by_command(("postgres",))


def _row(label: str, r: dict[str, Any], ceiling: dict[str, Any] | None) -> str:
    ratio = f"{r['rate'] / ceiling['rate']:>6.1%}" if ceiling else " " * 6
    failed = f"  {r['failures']} FAILED" if r["failures"] else ""
    return (f"{label:<48} {r['rate']:>8,.0f} /s  p50 {r['p50']:>6.1f} ms  p99 {r['p99']:>6.1f} ms  {ratio}"
            f"  server CPU {r['cpu'] / r['requests'] * 1000:.3f} ms/req{failed}")


async def bench(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    n, concurrency = args.deliveries, args.concurrency
    token = secrets.token_hex(4)
    name = f"campaigns_bench_{token}"
    dsn = f"{SERVER}/{name}"
    logs = Path(tempfile.mkdtemp(prefix="bench_receipts_"))
    print(f"database {name}; {n:,} deliveries, {2 * n:,} callbacks, {concurrency} in flight;"
          f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    stoppers: list[Any] = []
    ok = False
    try:
        await migrate(dsn)
        deliveries = await seed(dsn, n)

        bare_port = free_port()
        bare = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--bare-server", str(bare_port), cwd=ROOT
        )
        stoppers.append(lambda: bare.returncode is None and bare.terminate())
        await wait_answering(f"http://127.0.0.1:{bare_port}/healthz", lambda: bare.returncode is None)
        bare_work = callbacks(f"http://127.0.0.1:{bare_port}", deliveries)
        before = await drive(bare_work, concurrency, bare.pid)
        print(_row("ceiling: bare aiohttp handler (form, TwiML)", before, None), flush=True)

        port = free_port()
        env = {"CAMPAIGNS_DATABASE_URL": dsn, "CAMPAIGNS_TRACKER_PORT": str(port),
               "CAMPAIGNS_PUBLIC_URL": f"http://127.0.0.1:{port}", "TWILIO_AUTH_TOKEN": TOKEN,
               "CAMPAIGNS_SECRET_KEY": "bench-secret-key-bench-secret-key"}
        tracker = Service("tracker", ["tracker"], env, logs)
        tracker.start()
        stoppers.append(tracker.stop)
        await wait_answering(f"http://127.0.0.1:{port}/healthz", tracker.alive)
        work = callbacks(f"http://127.0.0.1:{port}", deliveries)
        pg_before = _postgres_cpu()
        real = await drive(work, concurrency, tracker.process.pid)  # type: ignore[union-attr]
        pg = _postgres_cpu() - pg_before  # (before the kill: its backends' time leaves with them)
        tracker.kill()  # the moment the last answer came: what was answered must be committed

        after = await drive(bare_work, concurrency, bare.pid)
        ceiling = {k: (before[k] + after[k]) / 2 for k in ("rate", "p50", "p99", "cpu", "requests")} | {"failures": 0}
        conn = await connect(dsn)
        try:
            delivered = await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
            counted = await conn.fetchval("SELECT sum(delivered) FROM delivery_counts")
        finally:
            await conn.close()
        print(_row("ceiling: bare aiohttp handler, again", after, None))
        print(_row("ceiling (mean)", ceiling, None))
        print(_row("tracker: POST /webhooks/twilio/sms/status", real, ceiling))
        print(f"PostgreSQL CPU {pg / real['requests'] * 1000:.3f} ms per callback;"
              f" tracker + PostgreSQL {(real['cpu'] + pg) / real['requests'] * 1000:.3f} ms per callback")
        half = "MET" if real["rate"] >= ceiling["rate"] / 2 else "NOT MET"
        p99 = "MET" if real["p99"] < 50 else "NOT MET"
        print(f"targets: rate >= 50% of the bare handler: {half}; p99 < 50 ms: {p99}")
        print(f"committed before answered: {delivered:,} of {n:,} deliveries `delivered` after the tracker was"
              f" SIGKILLed at the last answer (counts say {counted:,}): {'YES' if delivered == n == counted else 'NO'}")
        ok = delivered == n == counted and real["failures"] == 0
        return 0 if ok else 1
    finally:
        for stop in stoppers:
            with contextlib.suppress(Exception):
                stop()
        await drop_database(dsn)
        if ok:
            remove_logs(logs)
        else:
            print(f"service logs in {logs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=20_000, help="deliveries, two callbacks each (20,000)")
    parser.add_argument("--concurrency", type=int, default=64, help="callbacks in flight (default 64)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    try:
        return asyncio.run(bench(args))
    except asyncio.CancelledError:
        print("interrupted (SIGTERM); cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
