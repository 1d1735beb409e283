"""Benchmark: the API process under concurrent load, beside a bare aiohttp handler on the same machine.

    .venv/bin/python benchmarks/bench_api.py [--requests 5000] [--concurrency 50]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432) and RabbitMQ
(BENCH_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/). Each run creates its own database
`campaigns_bench_<random>` (migrated) and bus prefix `bench_<random>.`, and removes both at the end
(also on failure or Ctrl-C / SIGTERM).

What it measures, each with the same client (one aiohttp ClientSession in this process, a
connection pool of --concurrency, --concurrency workers sending --requests requests in all, after
a warm-up of 2 x --concurrency requests that is not counted): requests/s, p50 and p99 latency.
1. ceiling: a bare aiohttp app with one handler answering a small JSON object (`web.json_response`),
   served by a separate process (as the API is), on a free port; measured before and after the
   API (the machine may be shared) and averaged;
2. the real API (`python -m shared.cli api`, its own process, default settings but the database,
   bus prefix and port): `GET /campaigns/{id}` (one SMS draft of 10 contacts), `POST /campaigns`
   (a draft with 10 inline contacts: each request creates a campaign, upserts the contacts and
   writes CampaignCreated to the outbox, which the API's relay publishes) twice: the same 10
   contacts in every request (concurrent requests then update the same contact rows), and 10 new
   contacts per request; and `GET /healthz`.
Set-up (not timed): an account (shared.db.accounts) and an agent (POST /agents).
The ratio of each to the bare handler's requests/s is the figure to watch; beside it, the serving
process's CPU time per request and its ratio to the bare handler's, which other load on a shared
machine moves less.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402

from benchmarks.common import (  # noqa: E402
    SERVER,
    api_with_account,
    connections_in_use,
    cpu_seconds,
    drop_run,
    log_problems,
    remove_logs,
    wait_answering,
)
from shared.db.migrate import migrate  # noqa: E402
from tests.support import free_port  # noqa: E402

#: One request: (method, path, JSON body or None, expected status).
Request = tuple[str, str, Any, int]


# --------------------------------------------------------------------------------- bare ceiling


def bare_server(port: int) -> None:
    """Child process: one JSON handler, nothing else (no middlewares, no access log)."""

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"id": "camp_0123456789abcdef", "status": "draft", "total_contacts": 10})

    app = web.Application()
    app.router.add_get("/thing", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -------------------------------------------------------------------------------------- client


async def hammer(
    base: str, make: Callable[[int], Request], total: int, concurrency: int, headers: dict[str, str] | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """`total` requests, `concurrency` in flight; req/s, latency percentiles, failures, server CPU."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers, timeout=timeout) as http:

        async def one(k: int, latencies: list[float], failures: list[str]) -> None:
            method, path, body, expected = make(k)
            started = time.perf_counter()
            try:
                async with http.request(method, path, json=body) as response:
                    await response.read()
                    if response.status != expected:
                        failures.append(f"{response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(type(exc).__name__)
            latencies.append(time.perf_counter() - started)

        async def run(count: int, offset: int) -> tuple[float, list[float], list[str]]:
            latencies: list[float] = []
            failures: list[str] = []
            numbers = iter(range(offset, offset + count))

            async def worker() -> None:
                for k in numbers:
                    await one(k, latencies, failures)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started, latencies, failures

        await run(2 * concurrency, 10**8)  # warm-up: connections open, caches filled
        cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        seconds, latencies, failures = await run(total, 0)
        cpu = (cpu_seconds(server_pid) - cpu_before) if server_pid else 0.0
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "rate": total / seconds, "p50": quantiles[49] * 1000, "p99": quantiles[98] * 1000,
        "failures": len(failures), "first_failures": sorted(set(failures))[:3], "seconds": seconds,
        "server_cpu": cpu, "requests": total,
    }


# ------------------------------------------------------------------------------------------ main




async def cleanup(name: str, prefix: str, stoppers: list[Callable[[], Any]]) -> None:
    for stop in stoppers:
        with contextlib.suppress(Exception):
            stop()
    await drop_run(name, prefix)


def _row(label: str, r: dict[str, Any], ceiling: dict[str, Any] | None) -> str:
    ratio = f"{r['rate'] / ceiling['rate']:>7.1%}" if ceiling else f"{'':>7}"
    cpu_ms = r["server_cpu"] / r["requests"] * 1000
    cpu_ratio = f"{(ceiling['server_cpu'] / ceiling['requests'] * 1000) / cpu_ms:>7.1%}" if ceiling else f"{'':>7}"
    failed = f"  {r['failures']} failed {r['first_failures']}" if r["failures"] else ""
    return (f"{label:<44} {r['rate']:>7,.0f} req/s  p50 {r['p50']:>6.1f} ms  p99 {r['p99']:>6.1f} ms  {ratio}"
            f"  {r['server_cpu'] / r['seconds']:>4.0%} {cpu_ms:>6.3f} ms  {cpu_ratio}{failed}")


HEADER = (f"{'':<44} {'rate':>13}  {'p50 latency':>13}  {'p99 latency':>13}  {'ratio':>7}"
          f"  {'server CPU /req':>16}  {'ratio':>7}")


async def bench(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    total, concurrency = args.requests, args.concurrency
    token = secrets.token_hex(4)
    name, prefix = f"campaigns_bench_{token}", f"bench_{token}."
    dsn = f"{SERVER}/{name}"
    print(f"database {name}, bus prefix {prefix!r}; {total:,} requests per endpoint, {concurrency} in flight;"
          f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    # The API's pool opens up to 10 connections (CAMPAIGNS_DB_POOL_MAX); on a shared server, wait for room.
    waited, used, most = time.monotonic(), -1, -1
    while True:
        with contextlib.suppress(asyncpg.TooManyConnectionsError):
            used, most = await connections_in_use()
            if most - used >= 20 or time.monotonic() - waited > 300:
                break
        await asyncio.sleep(5)
    print(f"PostgreSQL connections in use {used} of {most} (waited {time.monotonic() - waited:.0f} s)", flush=True)
    stoppers: list[Callable[[], Any]] = []
    logs = Path(tempfile.mkdtemp(prefix="bench_api_"))
    ok = False
    try:
        await migrate(dsn)

        # ceiling: the bare handler, in its own process
        port = free_port()
        bare = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port), cwd=ROOT,
        )
        stoppers.append(lambda: bare.returncode is None and bare.terminate())
        await wait_answering(f"http://127.0.0.1:{port}/thing", lambda: bare.returncode is None)


        async def bare_run() -> dict[str, Any]:
            return await hammer(f"http://127.0.0.1:{port}", lambda k: ("GET", "/thing", None, 200), total, concurrency,
                                server_pid=bare.pid)

        before = await bare_run()
        print(HEADER)
        print(_row("ceiling: bare aiohttp JSON handler", before, None), flush=True)

        # the real API
        api, base, _account_id, key = await api_with_account(dsn, prefix, logs, stoppers)
        assert api.process is not None
        headers = {"Authorization": f"Bearer {key}"}
        phones = [f"+1415234{k:04d}" for k in range(10)]

        def fresh(k: int) -> list[str]:
            """Ten numbers no other request uses (+1 212 2xx-xxxx; warm-up requests wrap around)."""
            first = (k % 70_000) * 10
            return [f"+1212{200 + (first + j) // 10_000}{(first + j) % 10_000:04d}" for j in range(10)]
        async with aiohttp.ClientSession(base, headers=headers) as http:
            async with http.post("/agents", json={"name": "Riley", "instructions": "Bench."}) as r:
                agent = await r.json()
                assert r.status == 201, agent
            draft = {"name": "bench api", "agent_id": agent["id"], "type": "sms", "contacts": phones,
                     "message_template": "Hi {{phone}}, this is {{agent_name}}.", "max_concurrent": 5}
            async with http.post("/campaigns", json=draft) as r:
                campaign = await r.json()
                assert r.status == 201, campaign

        results = []
        for label, make in (
            ("api: GET /campaigns/{id}", lambda k: ("GET", f"/campaigns/{campaign['id']}", None, 200)),
            ("api: POST /campaigns (10 inline contacts)",
             lambda k: ("POST", "/campaigns", {**draft, "name": f"b{k}"}, 201)),
            ("api: POST /campaigns (10 new contacts each)",
             lambda k: ("POST", "/campaigns", {**draft, "name": f"n{k}", "contacts": fresh(k)}, 201)),
            ("api: GET /healthz", lambda k: ("GET", "/healthz", None, 200)),
        ):
            result = await hammer(base, make, total, concurrency, headers, server_pid=api.process.pid)
            print(_row(label, result, before), flush=True)
            results.append((label, result))
        # The bare handler again (the machine may be shared): the ceiling is the mean of both samples.
        after = await bare_run()
        bare.terminate()
        await bare.wait()
        ceiling = {
            "rate": (before["rate"] + after["rate"]) / 2, "p50": (before["p50"] + after["p50"]) / 2,
            "p99": (before["p99"] + after["p99"]) / 2, "server_cpu": before["server_cpu"] + after["server_cpu"],
            "requests": 2 * total, "seconds": before["seconds"] + after["seconds"],
            "failures": before["failures"] + after["failures"], "first_failures": before["first_failures"],
        }

        print(f"\n{HEADER}")
        print(_row("ceiling: bare aiohttp JSON handler (mean)", ceiling, None)
              + f"  [{before['rate']:,.0f} before, {after['rate']:,.0f} after]")
        for label, result in results:
            print(_row(label, result, ceiling))
        print("(ratio: req/s or CPU per request, against the bare handler's; server CPU: the serving process's CPU"
              " time over the wall time (100% = one core), and per request)"
              f"\n(load average at the end: {os.getloadavg()[0]:.2f}; other work on this machine skews both sides)")
        errors = dict(log_problems(api.output()))
        if errors:
            print(f"errors logged by the API: {errors}")
        ok = all(r["failures"] == 0 for _, r in [*results, ("", ceiling)])
        return 0 if ok else 1
    finally:
        await cleanup(name, prefix, stoppers)
        if ok:
            remove_logs(logs)
        else:
            print(f"api log in {logs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="requests per endpoint (default 5,000)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight (default 50)")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
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
