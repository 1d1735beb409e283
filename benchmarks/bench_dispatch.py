"""Benchmark: one SMS campaign end to end through the real services, beside the machine's ceilings.

    .venv/bin/python benchmarks/bench_dispatch.py [--contacts 20000] [--dispatchers 2] [--max-concurrent 50]
        [--latency 0.2]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432) and RabbitMQ
(BENCH_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/). Each run creates its own database
`campaigns_bench_<random>` (migrated) and its own exchange/queue prefix `bench_<random>.`, and
removes both at the end (also on failure or Ctrl-C / SIGTERM).

What it measures:
1. ceiling A: a bare aio-pika loop: N persistent messages published with publisher confirms (in
   batches of 500 in flight, like the outbox relay) to a durable quorum queue, consumed at the same
   time with manual ack (prefetch = --max-concurrent); msgs/s from the first publish to the last ack;
2. ceiling B: the FakeTwilio alone (its own thread and loop in this process, as in the real run),
   N POSTs of Messages.json by the real twilio async client (the product's TwilioSms provider
   class) from a separate process at --max-concurrent in flight; req/s;
3. the real thing: api, tracker, scheduler and --dispatchers SMS dispatchers, each its own
   process (`python -m shared.cli ...`, as tests/conftest.py `start_system` does), FakeTwilio as
   CAMPAIGNS_TWILIO_API_URL sending signed status callbacks (sent, delivered) to the tracker. Set-up
   (not timed): an account (shared.db.accounts; quiet hours off so the hour of day does not matter),
   an agent (POST /agents); above 100,000 contacts, a contact group written into the database.
   Timed: POST /campaigns with N inline contacts (or the group) and `"status": "scheduled"`
   (created and launched in one request), then GET /results every 0.5 s until sent == N, then
   delivered == N. Messages/s = N / seconds from the POST, to sent and to delivered.
   Afterwards: whether the fake got exactly one Messages.json POST per contact, and the CPU seconds
   each process (and PostgreSQL / RabbitMQ) used during the timed part, per message with and
   without the provider stand-in; the services' peak memory and how long each results read took
   while the campaign ran.
4. with --launches K: K launches of an N-contact campaign (a contact group), each timed from the
   launch request to its first message at the stand-in, then cancelled and drained;
5. with --latency L (the limit-bound run): the stand-in takes L seconds per message; the campaign's
   send rate against max_concurrent / L (over the whole run: from the POST to `sent == N` at the
   0.5 s polls, and to the last message the stand-in accepted, which no poll rounds up; and from
   the first message the stand-in accepted to the last), and the most requests it ever had in
   flight at once;
   beside it ceiling C: ceiling B's client and stand-in, the stand-in taking L seconds a message
   (about 10 s of requests): what the bare HTTP stack itself reaches of max_concurrent / L here.
The ceilings are measured with min(N, 100,000) messages (they are rates).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from benchmarks.common import (  # noqa: E402
    AMQP,
    SERVER,
    TICK,
    connections_in_use,
    cpu_seconds,
    drop_run,
    log_problems,
    remove_logs,
)
from shared.db import accounts  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402
from shared.db.pool import connect  # noqa: E402
from shared.sandbox.twilio import FakeTwilio, bound_port, serve  # noqa: E402
from tests.support import LoopThread, Service, free_port  # noqa: E402

TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-auth-token"  # noqa: S105 (the fake's own)
FROM_NUMBER = "+15005550006"
PUBLISH_WINDOW = 500
#: Messages each ceiling is measured with, at most (they are rates: a larger N changes nothing).
CEILING_MAX = 100_000
#: Larger campaigns send to a contact group (made in the database, not timed) instead of inline
#: contacts (a POST body of a million numbers is past the API's 16 MiB limit).
INLINE_MAX = 100_000
#: Seconds ceiling C (the limit-bound run's bare client at the slow stand-in) runs for, about.
LATENCY_CEILING_S = 10
#: Seconds without any change in the results after which the run is declared stalled.
STALL_S = 60

for _var in ("TWILIO_EDGE", "TWILIO_REGION"):
    os.environ.pop(_var, None)


# --------------------------------------------------------------------------------------- helpers


def phones(n: int) -> list[str]:
    """N distinct valid US numbers (+1 415 234-0000, 234-0001, ...)."""
    return [f"+1415{234 + k // 10_000}{k % 10_000:04d}" for k in range(n)]


def cpu_by_command(names: tuple[str, ...]) -> float:
    """CPU seconds of every process whose command name is one of `names` (all users)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        if comm in names:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# ------------------------------------------------------------------------------------- ceilings


async def ceiling_rabbit(n: int, prefix: str, prefetch: int) -> dict[str, float]:
    """Publish N persistent messages with confirms to a durable quorum queue while consuming them
    with manual ack; msgs/s from the first publish to the last ack."""
    body = json.dumps({
        "type": "send.sms", "version": 1, "message_id": str(uuid.uuid4()), "occurred_at": "2026-01-01T00:00:00Z",
        "account_id": "acct_" + "x" * 20, "campaign_id": "camp_" + "x" * 20, "delivery_id": "dlv_" + "x" * 20,
    }).encode()
    name = prefix + "ceiling"
    connection = await aio_pika.connect(AMQP)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        queue = await consume_channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            done = asyncio.Event()
            consumed = 0

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal consumed
                await message.ack()
                consumed += 1
                if consumed >= n:
                    done.set()

            tag = await queue.consume(on_message)
            exchange = publish_channel.default_exchange
            started = time.perf_counter()
            for first in range(0, n, PUBLISH_WINDOW):
                await asyncio.gather(*(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                         content_type="application/json", message_id=str(k)),
                        routing_key=name,
                    )
                    for k in range(first, min(n, first + PUBLISH_WINDOW))
                ))
            published = time.perf_counter() - started
            await asyncio.wait_for(done.wait(), 300)
            total = time.perf_counter() - started
            await queue.cancel(tag)
        finally:
            with contextlib.suppress(Exception):
                await consume_channel.queue_delete(name)
    finally:
        await connection.close()
    return {"rate": n / total, "publish_rate": n / published, "seconds": total}


def _ceiling_twilio_client(url: str, n: int, concurrency: int) -> None:
    """Child process: N message creates through the product's TwilioSms (real async twilio client)."""
    from shared.providers.twilio_sms import TwilioSms

    async def go() -> dict[str, Any]:
        provider = TwilioSms(TWILIO_SID, TWILIO_TOKEN, url, timeout=30)
        numbers = phones(n)
        failures = 0
        try:
            # warm the connection pool, then time N requests with `concurrency` in flight
            await asyncio.gather(*(
                provider.send_sms(to=numbers[k], from_=FROM_NUMBER, body="warm-up", status_callback="")
                for k in range(min(concurrency, n))
            ))
            queue = iter(numbers)

            async def worker() -> None:
                nonlocal failures
                for to in queue:
                    try:
                        await provider.send_sms(
                            to=to, from_=FROM_NUMBER, body=f"Hi {to}, this is Riley.", status_callback=""
                        )
                    except Exception:
                        failures += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - started
        finally:
            await provider.close()
        return {"seconds": seconds, "failures": failures, "cpu": time.process_time()}

    print(json.dumps(asyncio.run(go())))


async def ceiling_twilio(n: int, concurrency: int, latency: float = 0.0) -> dict[str, float]:
    """A FakeTwilio of its own (no callbacks; taking `latency` seconds a message), hammered from a
    child process."""
    thread = LoopThread()
    fake = FakeTwilio(TWILIO_SID, TWILIO_TOKEN, response_delay=latency)
    runner = thread.run(serve(fake, "127.0.0.1", 0))
    url = f"http://127.0.0.1:{bound_port(runner)}"
    own_before = cpu_seconds(os.getpid())
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--twilio-client", url, str(n), str(concurrency),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"ceiling B client failed:\n{err.decode()[-3000:]}")
        result = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        thread.run(runner.cleanup())
        thread.close()
    creates = sum(1 for r in fake.requests if r.method == "POST")
    return {
        "rate": n / result["seconds"], "failures": result["failures"], "creates": creates,
        "client_cpu": result["cpu"], "fake_cpu": cpu_seconds(os.getpid()) - own_before,
        "seconds": result["seconds"],
    }


async def contacts_group(dsn: str, account_id: str, numbers: list[str]) -> str:
    """A group of contacts with these numbers, written straight into the database (set-up)."""
    group_id = "grp_bench" + secrets.token_hex(6)
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO contact_groups (id, account_id, name) VALUES ($1, $2, 'bench')", group_id, account_id
            )
            ids = [f"ct_bench{k:010d}" for k in range(len(numbers))]
            await conn.copy_records_to_table(
                "contacts", records=[(i, account_id, p) for i, p in zip(ids, numbers, strict=True)],
                columns=("id", "account_id", "phone"),
            )
            await conn.copy_records_to_table(
                "group_members", records=[(group_id, i) for i in ids], columns=("group_id", "contact_id")
            )
        await conn.execute("ANALYZE contacts")
        await conn.execute("ANALYZE group_members")
    finally:
        await conn.close()
    return group_id


# ------------------------------------------------------------------------------- the real thing


def start_services(env: dict[str, str], dispatchers: int, logs: Path) -> dict[str, Service]:
    services = {
        "api": Service("api", ["api"], env, logs),
        "tracker": Service("tracker", ["tracker"], env, logs),
        "scheduler": Service("scheduler", ["scheduler"], env, logs),
    }
    for k in range(1, dispatchers + 1):
        services[f"dispatcher-{k}"] = Service(f"dispatcher-{k}", ["dispatcher", "--channel", "sms"], env, logs)
    for service in services.values():
        service.start()
    return services


async def wait_healthy(services: dict[str, Service], urls: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            dead = [name for name, s in services.items() if not s.alive()]
            if dead:
                raise RuntimeError(f"{dead} exited:\n" + "\n".join(services[d].output()[-2000:] for d in dead))
            ok = True
            for url in urls:
                try:
                    async with session.get(url + "/healthz") as response:
                        ok = ok and response.status == 200
                except aiohttp.ClientError:
                    ok = False
            if ok:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("services not healthy in time")


_SAMPLE = """
SELECT COALESCE(sum(queued), 0) AS queued, COALESCE(sum(sending), 0) AS sending, COALESCE(sum(in_flight), 0) AS slots
FROM delivery_counts WHERE campaign_id = $1
"""


def rss_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS), in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def run_campaign(
    api_url: str, key: str, numbers: list[str], max_concurrent: int, deadline_s: float, services: dict[str, Service],
    dsn: str, group_id: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    n = len(numbers)
    peak_rss: dict[str, float] = collections.defaultdict(float)
    reads: list[float] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        agent_spec = {"name": "Riley", "instructions": "Bench.", "opening_message": "Hi"}
        async with http.post(api_url + "/agents", json=agent_spec) as r:
            agent = await r.json()
            if r.status != 201:
                raise RuntimeError(f"POST /agents: {r.status} {agent}")
        spec = {
            "name": "bench dispatch", "agent_id": agent["id"], "type": "sms",
            "message_template": "Hi {{phone}}, this is {{agent_name}} following up.",
            "max_concurrent": max_concurrent, "status": "scheduled",
        }
        spec |= {"contact_group_id": group_id} if group_id else {"contacts": numbers}
        started = time.perf_counter()
        async with http.post(api_url + "/campaigns", json=spec) as r:
            created = await r.json()
            if r.status != 201:
                raise RuntimeError(f"POST /campaigns: {r.status} {str(created)[:2000]}")
        posted = time.perf_counter() - started
        campaign_id = created["id"]
        to_sent = to_delivered = None
        samples: list[asyncpg.Record] = []
        sampler = await connect(dsn)
        seen, changed_at = None, time.perf_counter()
        last: dict[str, Any] = {}
        progress_at = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now - started > deadline_s:
                raise RuntimeError(f"deadline of {deadline_s:.0f} s passed; last results {last}")
            dead = [name for name, s in services.items() if not s.alive()]
            if dead:
                raise RuntimeError(f"{dead} exited during the run")
            read_started = time.perf_counter()
            async with http.get(f"{api_url}/campaigns/{campaign_id}/results") as r:
                last = await r.json()
            if last["pending"]:  # a read while the campaign runs
                reads.append(time.perf_counter() - read_started)
            for name, service in services.items():
                if service.process:
                    peak_rss[name] = max(peak_rss[name], rss_mb(service.process.pid))
            figures = (last["sent"], last["delivered"], last["failed"], last["pending"])
            if figures != seen:
                seen, changed_at = figures, time.perf_counter()
            elif time.perf_counter() - changed_at > STALL_S:
                raise RuntimeError(f"no progress for {STALL_S} s; last results {last}")
            if to_sent is None:  # diagnostics while sends are under way: where the deliveries wait
                samples.append(await sampler.fetchrow(_SAMPLE, campaign_id))
            if to_sent is None and last["sent"] >= n:
                to_sent = time.perf_counter() - started
            if last["delivered"] >= n:
                to_delivered = time.perf_counter() - started
                if to_sent is None:
                    to_sent = to_delivered
                break
            if now - progress_at >= 10:
                progress_at = now
                print(f"  … {now - started:5.0f} s: sent {last['sent']:,}, delivered {last['delivered']:,},"
                      f" failed {last['failed']:,}, pending {last['pending']:,}", flush=True)
            await asyncio.sleep(0.5)
        await sampler.close()
    busy = [r for r in samples if r["queued"] or r["sending"]] or samples or [{"queued": 0, "sending": 0, "slots": 0}]
    mean = {k: sum(r[k] for r in busy) / len(busy) for k in ("queued", "sending", "slots")}
    return {"campaign_id": campaign_id, "started": started, "post": posted, "to_sent": to_sent,
            "to_delivered": to_delivered,
            "results": last, "mean": mean, "samples": len(busy), "peak_rss": dict(peak_rss), "reads": reads}


async def work_done(dsn: str, name: str) -> tuple[int, int, int]:
    """(transactions committed in the bench database, messages the outbox has published, the WAL's
    position in bytes: the whole server's) so far."""
    conn = await connect(dsn)
    try:
        commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name)
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        published = await conn.fetchval(
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq) - count(*) FROM outbox"
        )
    finally:
        await conn.close()
    return int(commits), int(published), int(wal)


async def launch_samples(
    api_url: str, key: str, group_id: str, max_concurrent: int, samples: int, fake: FakeTwilio
) -> list[float]:
    """Launch a campaign to the group `samples` times (each cancelled once it has sent, and drained
    before the next): seconds from the launch request to the first message at the stand-in."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {key}"}
    found: list[float] = []
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=600)) as http:
        async with http.post(api_url + "/agents", json={"name": "Riley", "opening_message": "Hi"}) as r:
            agent = await r.json()
        for k in range(samples):
            spec = {"name": f"launch {k}", "agent_id": agent["id"], "type": "sms", "contact_group_id": group_id,
                    "message_template": "Hi {{phone}}", "max_concurrent": max_concurrent}
            async with http.post(api_url + "/campaigns", json=spec) as r:
                draft = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"POST /campaigns: {r.status} {draft}")
            first: asyncio.Future[float] = loop.create_future()

            def on_create(_to: str, first: asyncio.Future[float] = first) -> None:  # the stand-in's thread
                at = time.perf_counter()
                loop.call_soon_threadsafe(lambda: first.done() or first.set_result(at))

            fake.on_create = on_create
            started = time.perf_counter()
            launch = asyncio.create_task(http.post(f"{api_url}/campaigns/{draft['id']}/launch"))
            found.append(await asyncio.wait_for(first, 60) - started)
            fake.on_create = None
            (await launch).release()
            async with http.post(f"{api_url}/campaigns/{draft['id']}/cancel") as r:
                await r.read()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # drained: nothing of it in flight before the next launch
                async with http.get(f"{api_url}/campaigns/{draft['id']}/results") as r:
                    body = await r.json()
                if body["pending"] == 0 and fake.in_flight == 0:
                    break
                await asyncio.sleep(0.2)
            print(f"  launch {k + 1}: first message {found[-1] * 1000:.1f} ms after the launch request", flush=True)
    return found


_ACTIVITY = """
SELECT state, wait_event_type, wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle'
"""
_TABLES = """
SELECT relname, seq_scan, seq_tup_read, idx_scan, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup
FROM pg_stat_user_tables ORDER BY seq_tup_read DESC LIMIT 8
"""
#: The PL/pgSQL functions' time (the triggers): counted because --diagnose sets the bench
#: database's `track_functions` before the services connect.
_FUNCTIONS = """
SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 8
"""


class DbSampler:
    """--diagnose: samples pg_stat_activity of the bench database at 20 Hz (which statements are
    running or waiting, and on what), a poor man's profile of where PostgreSQL time goes."""

    def __init__(self, dsn: str, name: str):
        self._dsn, self._name = dsn, name
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await connect(self._dsn)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for row in await self._conn.fetch(_ACTIVITY, self._name):
                wait = f"{row['wait_event_type']}:{row['wait_event']}" if row["wait_event_type"] else "CPU"
                self.counts[(row["state"] + " " + wait, row["query"])] += 1
            self.samples += 1
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.tables = await self._conn.fetch(_TABLES)
        await asyncio.sleep(1.5)  # (each backend reports its functions' time within a second)
        self.functions = await self._conn.fetch(_FUNCTIONS)
        await self._conn.close()

    def report(self, n: int) -> None:
        print(f"\nPostgreSQL sessions of the bench database, mean busy backends over {self.samples} samples"
              f" ({sum(self.counts.values()) / max(1, self.samples):.1f} busy on average):")
        for (state, query), count in self.counts.most_common(14):
            print(f"  {count / max(1, self.samples):5.2f}  {state:<32} {query}")
        print("tables (seq_scan, seq_tup_read, idx_scan, updates, HOT updates, dead, live):")
        for t in self.tables:
            print(f"  {t['relname']:<22} {t['seq_scan']:>8} {t['seq_tup_read']:>12,} {t['idx_scan'] or 0:>9}"
                  f" {t['n_tup_upd']:>8} {t['n_tup_hot_upd']:>8} {t['n_dead_tup']:>8} {t['n_live_tup']:>8}")
        print("PL/pgSQL functions (the triggers; calls, total and self ms, total ms a message):")
        for f in self.functions:
            print(f"  {f['funcname']:<28} {f['calls']:>8} {f['total_time']:>10.0f} {f['self_time']:>10.0f}"
                  f" {f['total_time'] / n:>8.3f}")


async def cleanup(name: str, prefix: str, services: dict[str, Service], fake: tuple | None) -> None:
    for service in services.values():
        with contextlib.suppress(Exception):
            service.stop()
    if fake is not None:
        thread, runner = fake
        with contextlib.suppress(Exception):
            thread.run(runner.cleanup())
        thread.close()
    await drop_run(name, prefix, queues=(prefix + "ceiling",))


def log_errors(services: dict[str, Service]) -> dict[str, dict[str, int]]:
    """Per service, its most frequent warnings/errors (by event and cause)."""
    found = {name: log_problems(service.output()) for name, service in services.items()}
    return {name: dict(counts.most_common(4)) for name, counts in found.items() if counts}


def _rate(value: float) -> str:
    return f"{value:>12,.0f}"


async def bench(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)

    n, concurrency = args.contacts, args.max_concurrent
    token = secrets.token_hex(4)
    name, prefix = f"campaigns_bench_{token}", f"bench_{token}."
    dsn = f"{SERVER}/{name}"
    print(f"database {name}, bus prefix {prefix!r}; N = {n:,} contacts, {args.dispatchers} SMS dispatchers,"
          f" max_concurrent {concurrency}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
          flush=True)
    # The services open up to 30 + 12 per dispatcher connections; on a shared server, wait for room.
    need = 30 + args.dispatchers * 12 + 5
    waited, used, most = time.monotonic(), -1, -1
    while True:
        with contextlib.suppress(asyncpg.TooManyConnectionsError):
            used, most = await connections_in_use()
            if most - used >= need or time.monotonic() - waited > 300:
                break
        await asyncio.sleep(5)
    print(f"PostgreSQL connections in use {used} of {most} (waited {time.monotonic() - waited:.0f} s);"
          f" the services may open up to {need - 5} (pools of 10, dispatchers 12)", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="bench_dispatch_"))
    services: dict[str, Service] = {}
    fake_server: tuple | None = None
    ok = False
    try:
        await migrate(dsn)
        if args.diagnose:  # the triggers' time, for DbSampler (this scratch database's setting only)
            conn = await connect(dsn)
            try:
                await conn.execute(f"ALTER DATABASE {name} SET track_functions = 'pl'")
            finally:
                await conn.close()

        own, beam = cpu_seconds(os.getpid()), cpu_by_command(("beam.smp", "erl_child_setup"))
        n_ceiling = min(n, CEILING_MAX) if not args.launches else 1000  # (launch mode: a token run)
        rabbit = await ceiling_rabbit(n_ceiling, prefix, prefetch=concurrency)
        rabbit["cpu"] = cpu_seconds(os.getpid()) - own + cpu_by_command(("beam.smp", "erl_child_setup")) - beam
        print(f"ceiling A, bare aio-pika publish (confirms) + consume (manual ack): {rabbit['rate']:,.0f} msgs/s"
              f" (publishing alone {rabbit['publish_rate']:,.0f} msgs/s)", flush=True)
        twilio = await ceiling_twilio(n_ceiling, concurrency)
        print(f"ceiling B, FakeTwilio alone, twilio async client x{concurrency}: {twilio['rate']:,.0f} req/s"
              f" ({twilio['failures']} failures)", flush=True)
        held = None  # ceiling C (the limit-bound run): the same client and stand-in, the stand-in slow
        if args.latency:
            held = await ceiling_twilio(min(n, round(LATENCY_CEILING_S * concurrency / args.latency)), concurrency,
                                        args.latency)
            print(f"ceiling C, FakeTwilio taking {args.latency * 1000:.0f} ms, twilio async client x{concurrency}:"
                  f" {held['rate']:,.1f} req/s ({held['failures']} failures)", flush=True)

        # the system
        thread = LoopThread()
        fake = FakeTwilio(TWILIO_SID, TWILIO_TOKEN, light=True, response_delay=args.latency)
        runner = thread.run(serve(fake, "127.0.0.1", 0))
        fake_server = (thread, runner)
        fake.url = f"http://127.0.0.1:{bound_port(runner)}"
        api_port, tracker_port = free_port(), free_port()
        env = {
            "CAMPAIGNS_DATABASE_URL": dsn,
            "CAMPAIGNS_AMQP_URL": AMQP,
            "CAMPAIGNS_AMQP_PREFIX": prefix,
            "CAMPAIGNS_API_PORT": str(api_port),
            "CAMPAIGNS_TRACKER_PORT": str(tracker_port),
            "CAMPAIGNS_PUBLIC_URL": f"http://127.0.0.1:{tracker_port}",
            "CAMPAIGNS_TWILIO_API_URL": fake.url,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "CAMPAIGNS_DEFAULT_FROM_NUMBER": FROM_NUMBER,
        }
        api_url, tracker_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{tracker_port}"
        services = start_services(env, args.dispatchers, logs)
        await wait_healthy(services, [api_url, tracker_url])

        conn = await connect(dsn)
        try:
            async with conn.transaction():
                account_id = await accounts.create_account(conn, "bench", Decimal(1_000_000))
                key = await accounts.create_key(conn, account_id)
                # Quiet hours off: the run must not depend on the hour of day at the contacts' numbers.
                await conn.execute("UPDATE accounts SET quiet_hours = false WHERE id = $1", account_id)
        finally:
            await conn.close()

        numbers = phones(n)
        group_id = await contacts_group(dsn, account_id, numbers) if n > INLINE_MAX or args.launches else None
        if args.launches:
            assert group_id is not None
            times = sorted(await launch_samples(api_url, key, group_id, concurrency, args.launches, fake))
            print(f"\nlaunch to first send, {n:,} contacts, {len(times)} launches: median"
                  f" {statistics.median(times) * 1000:.1f} ms, fastest {times[0] * 1000:.1f} ms, slowest"
                  f" {times[-1] * 1000:.1f} ms (target: median < 50 ms)")
            ok = True
            return 0
        answered: dict[str, float] = {}  # when the stand-in accepted the first and the latest message
        if args.latency:

            def on_create(_to: str) -> None:  # the stand-in's thread, after its latency
                answered["last"] = time.perf_counter()
                answered.setdefault("first", answered["last"])

            fake.on_create = on_create
        work_before = await work_done(dsn, name)
        cpu_before = {s: cpu_seconds(svc.process.pid) for s, svc in services.items() if svc.process}
        own_before = cpu_seconds(os.getpid())
        pg_before, mq_before = cpu_by_command(("postgres",)), cpu_by_command(("beam.smp", "erl_child_setup"))
        busy_before = machine_busy()
        db_sampler = DbSampler(dsn, name) if args.diagnose else None
        if db_sampler:
            await db_sampler.start()
        try:
            result = await run_campaign(api_url, key, numbers, concurrency, args.deadline, services, dsn, group_id)
        finally:
            busy_after = machine_busy()
            if db_sampler:
                await db_sampler.stop()
        cpu = {s: cpu_seconds(svc.process.pid) - cpu_before[s] for s, svc in services.items() if svc.process}
        cpu["FakeTwilio + this script"] = cpu_seconds(os.getpid()) - own_before
        cpu["PostgreSQL (all backends)"] = cpu_by_command(("postgres",)) - pg_before
        cpu["RabbitMQ (beam.smp)"] = cpu_by_command(("beam.smp", "erl_child_setup")) - mq_before
        machine = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])

        creates = fake.creates
        exactly_once = all(creates.get(p) == 1 for p in numbers) and sum(creates.values()) == n
        twice = sum(1 for p in numbers if creates.get(p, 0) > 1)
        never = sum(1 for p in numbers if creates.get(p, 0) == 0)

        total, to_sent, posted = result["to_delivered"], result["to_sent"], result["post"]
        e2e = n / total
        rows = [
            ("ceiling A: bare RabbitMQ publish(confirm)+consume(ack)", _rate(rabbit["rate"]),
             f"msgs/s (quorum queue, prefetch {concurrency}; publish alone {rabbit['publish_rate']:,.0f}/s)"),
            (f"ceiling B: FakeTwilio alone, twilio client x{concurrency}", _rate(twilio["rate"]),
             f"req/s (client CPU {twilio['client_cpu']:.1f} s, fake {twilio['fake_cpu']:.1f} s)"),
            ("POST /campaigns (create + launch, N inline)", f"{posted:>11.1f}s", ""),
            ("campaign: POST -> sent == N", _rate(n / to_sent), f"msgs/s ({to_sent:.1f} s)"),
            ("campaign: POST -> delivered == N (end to end)", _rate(e2e), f"msgs/s ({total:.1f} s)"),
            ("campaign after the POST: -> delivered == N", _rate(n / (total - posted)),
             f"msgs/s ({total - posted:.1f} s)"),
            ("ratio end to end / ceiling A (bus)", f"{e2e / rabbit['rate']:>12.1%}", ""),
            ("ratio end to end / ceiling B (provider)", f"{e2e / twilio['rate']:>12.1%}", ""),
            ("ratio to sent / ceiling B (provider)", f"{n / to_sent / twilio['rate']:>12.1%}", ""),
            # Per CPU-second: less at the mercy of other work on a shared machine than wall-clock rates.
            ("per CPU-s: ceiling A (this process + RabbitMQ)", _rate(n / rabbit["cpu"]),
             f"msgs per CPU-second ({rabbit['cpu']:.1f} s)"),
            ("per CPU-s: ceiling B (client + fake)", _rate(n / (twilio["client_cpu"] + twilio["fake_cpu"])),
             f"req per CPU-second ({twilio['client_cpu'] + twilio['fake_cpu']:.1f} s)"),
            ("per CPU-s: campaign (services + PG + RabbitMQ + fake)", _rate(n / sum(cpu.values())),
             f"msgs per CPU-second ({sum(cpu.values()):.1f} s, {sum(cpu.values()) / n * 1000:.1f} ms/msg)"),
            ("ratio per CPU-s campaign / ceiling A", f"{rabbit['cpu'] / sum(cpu.values()):>12.1%}", ""),
            ("ratio per CPU-s campaign / ceiling B",
             f"{(twilio['client_cpu'] + twilio['fake_cpu']) / sum(cpu.values()):>12.1%}", ""),
        ]
        print()
        for label, value, unit in rows:
            print(f"{label:<56} {value:>14}  {unit}")
        final = result["results"]
        print(f"results: sent {final['sent']:,}, delivered {final['delivered']:,}, failed {final['failed']:,},"
              f" pending {final['pending']:,}; status callbacks sent by the fake {fake.callbacks_sent:,}")
        mean = result["mean"]
        print(f"while sending (mean of {result['samples']} samples): {mean['queued']:,.0f} deliveries queued,"
              f" {mean['sending']:,.1f} sending, {mean['slots']:,.1f} of {concurrency} slots leased")
        print(f"exactly one Messages.json POST per contact: {'YES' if exactly_once else 'NO'}"
              f" ({sum(creates.values()):,} POSTs for {n:,} contacts; {twice} contacts more than once, {never} never)")
        if args.latency:
            bound = concurrency / args.latency
            print(f"limit bound: max_concurrent {concurrency} at {args.latency * 1000:.0f} ms a request allows"
                  f" {bound:,.1f} msgs/s; sent at {n / to_sent:,.1f} msgs/s = {n / to_sent / bound:.1%} of it"
                  f" (target >= 95%); peak requests in flight at the stand-in {fake.peak_in_flight}"
                  f" ({'never above' if fake.peak_in_flight <= concurrency else 'ABOVE'} {concurrency})")
            steady = whole = None
            if answered:  # the stand-in's clock is this process's perf_counter: no 0.5 s polling step
                whole = n / (answered["last"] - result["started"])
                print(f"limit bound, from the launch request to the last message the stand-in accepted (launch"
                      f" included, no polling): {whole:,.1f} msgs/s = {whole / bound:.1%} of it")
            if answered and answered["last"] > answered["first"]:
                steady = (n - 1) / (answered["last"] - answered["first"])
                print(f"limit bound, from the first message the stand-in accepted to the last (no launch, no"
                      f" polling): {steady:,.1f} msgs/s = {steady / bound:.1%} of it")
            if held:
                print(f"ceiling C, the bare client at the same stand-in ({concurrency} in flight):"
                      f" {held['rate']:,.1f} req/s = {held['rate'] / bound:.1%} of {bound:,.1f}; the campaign is"
                      f" {n / to_sent / held['rate']:.1%} of ceiling C over the whole run"
                      + (f", {whole / held['rate']:.1%} from the launch to the last message" if whole else "")
                      + (f", {steady / held['rate']:.1%} from first to last" if steady else ""))
        stand_in = cpu["FakeTwilio + this script"]
        product = sum(cpu.values()) - stand_in
        commits, published, wal = (a - b for a, b in zip(await work_done(dsn, name), work_before, strict=True))
        print(f"work per message: {commits / n:.3f} PostgreSQL commits, {published / n:.4f} broker messages,"
              f" {wal / n / 1024:.1f} KiB of WAL ({commits:,} commits, {published:,} messages and"
              f" {wal / 2**20:,.0f} MiB of WAL for {n:,}; the WAL is the whole server's)")
        print(f"CPU per message: {sum(cpu.values()) / n * 1000:.2f} ms all processes together;"
              f" {product / n * 1000:.2f} ms without the provider stand-in (target <= 2 ms)")
        reads = sorted(result["reads"])
        if reads:
            print(f"GET /campaigns/{{id}}/results while it ran: median {reads[len(reads) // 2] * 1000:.1f} ms,"
                  f" p99 {reads[int(len(reads) * 0.99)] * 1000:.1f} ms over {len(reads)} reads"
                  " (target: median < 20 ms)")
        print("peak memory (VmRSS) of each service during the run: " + ", ".join(
            f"{name} {mb:.0f} MB" for name, mb in sorted(result["peak_rss"].items())) + " (target < 150 MB each)")
        print(f"\nCPU seconds during the timed part ({total:.1f} s wall; machine busy {machine:.0%} of"
              f" {os.cpu_count()} CPUs):")
        for label, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
            print(f"  {label:<28} {seconds:7.1f} s  ({seconds / total:4.0%} of one core,"
                  f" {seconds / n * 1000:5.2f} ms/msg)")
        print(f"(load average at the end: {os.getloadavg()[0]:.2f}; other work on this machine skews both sides)")
        if db_sampler:
            db_sampler.report(n)
        ok = exactly_once
        return 0 if ok else 1
    finally:
        errors = log_errors(services)
        if errors:
            print(f"errors logged by the services: {errors}")
        await cleanup(name, prefix, services, fake_server)
        if ok and not args.keep_logs:
            remove_logs(logs)
        else:
            print(f"service logs in {logs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20_000, help="contacts in the campaign (default 20,000)")
    parser.add_argument("--dispatchers", type=int, default=2, help="SMS dispatcher processes (default 2)")
    parser.add_argument("--max-concurrent", type=int, default=50, help="the campaign's max_concurrent (default 50)")
    parser.add_argument("--deadline", type=float, default=3600,
                        help="seconds to wait for delivered == N (default 3600)")
    parser.add_argument("--launches", type=int, default=0, metavar="K",
                        help="instead of a campaign to the end: K launches of an N-contact campaign, each timed to"
                             " its first message at the stand-in (then cancelled)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the provider stand-in takes per message (the limit-bound run: 0.2)")
    parser.add_argument("--diagnose", action="store_true",
                        help="sample pg_stat_activity during the run and print where PostgreSQL time goes, and the"
                             " time of its PL/pgSQL functions (the triggers)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (kept anyway on failure)")
    parser.add_argument("--twilio-client", nargs=3, metavar=("URL", "N", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.twilio_client:
        url, n, concurrency = args.twilio_client
        _ceiling_twilio_client(url, int(n), int(concurrency))
        return 0
    try:
        return asyncio.run(bench(args))
    except asyncio.CancelledError:
        print("interrupted (SIGTERM); cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
