"""Benchmark: plan and store a campaign of N contacts, beside the machine's bare ceilings.

    .venv/bin/python benchmarks/bench_planning.py [--contacts 1000000] [--profile]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432). Each run creates
its own database `campaigns_bench_<random>` (migrated with shared.db.migrate) and drops it at the end.

What it measures (issue 4, "Done when", last bullet):
1. set-up (not timed): an account, an agent, an SMS campaign (`contact_local`, 09:00 a week ahead,
   window 9-17 without Saturday/Sunday, quiet hours on) and N contacts over ~10 zones: some with
   their own `timezone`, the rest placed by their number (+1 212/305/415/..., +44, +91, +61),
   loaded with COPY and linked through campaign_recipients;
2. ceiling A: a bare `datetime(wall, tzinfo=<cached ZoneInfo>).astimezone(UTC)` loop, contacts/s;
3. ceiling B: a bare COPY of the same delivery rows (PLAN_COLUMNS, precomputed tuples) into the
   real deliveries table, in a transaction that is rolled back (then VACUUM), rows/s;
4. the real thing: `Handlers(pool).campaign_launched(CampaignLaunched(...))`, exactly as the
   scheduler service runs it, in a fresh child process; contacts/s, split into fetch / plan / COPY
   (by timing wrappers around `recipients` and `copy_planned`); then checks N deliveries exist;
5. memory: the child's peak RSS (ru_maxrss) planning N contacts vs N/10 (another fresh child);
   the target is the same within 10%.
Targets: planning+storing >= 50% of the bare COPY rate; peak memory(N) / memory(N/10) <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from shared.db import deliveries  # noqa: E402
from shared.db.migrate import drop_database, migrate  # noqa: E402
from shared.db.pool import connect, create_pool  # noqa: E402
from shared.ids import new_id  # noqa: E402
from shared.settings import Settings  # noqa: E402

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
TARGET_COPY_RATIO = 0.50
TARGET_MEMORY_RATIO = 1.10

#: Explicit contact zones (about 30% of contacts carry one of these).
CONTACT_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "Pacific/Honolulu", "Europe/London", "Asia/Kolkata",
    "Asia/Kathmandu", "Australia/Sydney",
)
#: Number prefixes (weight, prefix, digits after it); the serial number fills the digits.
PHONE_PREFIXES = (
    (14, "+1212", 7), (8, "+1305", 7), (10, "+1415", 7), (8, "+1312", 7), (6, "+1303", 7),
    (5, "+1602", 7), (4, "+1860", 7), (3, "+1808", 7), (8, "+1713", 7), (3, "+1601", 7),
    (8, "+44207", 7),   # London
    (3, "+447911", 6),  # UK mobile: four zones (London, Jersey, Guernsey, Isle of Man)
    (8, "+9198", 8),    # India
    (4, "+6129", 7),    # Sydney
    (2, "+61412", 6),   # Australian mobile: too many zones, falls back to the account zone
)
US_STATES_SOMETIMES = ("FL", "CT", "NJ", "TX", "CA")


# --------------------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _phone(prefix: str, digits: int, serial: int) -> str:
    if prefix.startswith("+1"):  # NXX must not start with 0/1: exchange 234.., then 4 digits
        return f"{prefix}{234 + serial // 10_000}{serial % 10_000:04d}"
    return f"{prefix}{serial:0{digits}d}"


def make_contacts(n: int, account_id: str, seed: int = 42) -> tuple[list[str], list[str], list[tuple]]:
    """N contact rows (COPY order), and their ids and phones (kept for ceiling B)."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in PHONE_PREFIXES]
    serials = [0] * len(PHONE_PREFIXES)
    picks = rng.choices(range(len(PHONE_PREFIXES)), weights=weights, k=n)
    ids: list[str] = []
    phones: list[str] = []
    rows: list[tuple] = []
    for i, pick in enumerate(picks):
        _, prefix, digits = PHONE_PREFIXES[pick]
        phone = _phone(prefix, digits, serials[pick])
        serials[pick] += 1
        roll = rng.random()
        tz = CONTACT_ZONES[rng.randrange(len(CONTACT_ZONES))] if roll < 0.30 else None
        metadata = {"state": US_STATES_SOMETIMES[i % 5]} if prefix.startswith("+1") and roll > 0.95 else {}
        contact_id = new_id("contact")
        ids.append(contact_id)
        phones.append(phone)
        rows.append((
            contact_id, account_id, f"First{i}", f"Last{i}", f"c{i}@example.com", phone, "Acme",
            tz, metadata, rng.random() < 0.01, False, False,
        ))
    return ids, phones, rows


CONTACT_COLUMNS = (
    "id", "account_id", "first_name", "last_name", "email", "phone", "company", "timezone",
    "metadata", "opted_out_sms", "opted_out_email", "opted_out_voice",
)


async def setup(dsn: str, n: int, small: int, extra_small: int) -> dict[str, Any]:
    """Account, agent, campaigns (N recipients, `small` recipients, optional profiling one), contacts."""
    conn = await connect(dsn)
    try:
        account_id, agent_id = new_id("account"), new_id("agent")
        await conn.execute(
            "INSERT INTO accounts (id, name, balance, default_timezone, quiet_hours)"
            " VALUES ($1, 'bench', 1000000, 'America/New_York', true)",
            account_id,
        )
        await conn.execute(
            "INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'bench agent')", agent_id, account_id
        )
        wall = datetime.combine((datetime.now(UTC) + timedelta(days=7)).date(), datetime.min.time()).replace(hour=9)
        window = {"start_hour": 9, "end_hour": 17, "excluded_days": ["saturday", "sunday"]}

        async def campaign(name: str) -> str:
            campaign_id = new_id("campaign")
            await conn.execute(
                "INSERT INTO campaigns (id, account_id, name, agent_id, channel, status, message_template,"
                " timezone, scheduled_wall, sending_window)"
                " VALUES ($1, $2, $3, $4, 'sms', 'scheduled', 'Hi {{first_name}}', 'contact_local', $5, $6)",
                campaign_id, account_id, name, agent_id, wall, window,
            )
            return campaign_id

        big = await campaign("bench-big")
        little = await campaign("bench-small")
        profiled = await campaign("bench-profile") if extra_small else None

        ids, phones, rows = make_contacts(n, account_id)
        await conn.copy_records_to_table("contacts", records=rows, columns=CONTACT_COLUMNS)
        del rows
        # Link in heap order (the recipients query then reads them back in this order).
        for campaign_id, limit in ((big, n), (little, small), (profiled, extra_small)):
            if campaign_id is None:
                continue
            await conn.copy_records_to_table(
                "campaign_recipients",
                records=((campaign_id, ids[k], k) for k in range(limit)),
                columns=("campaign_id", "contact_id", "position"),
            )
            await conn.execute("UPDATE campaigns SET total_contacts = $2 WHERE id = $1", campaign_id, limit)
        await conn.execute("ANALYZE")
        await conn.execute("CHECKPOINT")
        return {
            "account_id": account_id, "big": big, "small": little, "profiled": profiled,
            "ids": ids, "phones": phones, "wall": wall,
        }
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------- ceilings


def ceiling_zoneinfo(n: int, wall: datetime) -> float:
    """Contacts/s of a bare loop: wall time in a cached ZoneInfo, converted to UTC."""
    cached = [ZoneInfo(name) for name in CONTACT_ZONES]
    zones = [cached[i % len(cached)] for i in range(n)]
    y, mo, d, h, mi = wall.year, wall.month, wall.day, wall.hour, wall.minute
    started = time.perf_counter()
    for tz in zones:
        datetime(y, mo, d, h, mi, tzinfo=tz).astimezone(UTC)
    return n / (time.perf_counter() - started)


async def sample_plans(dsn: str, state: dict[str, Any]) -> list[tuple[datetime, dict, str, str | None]]:
    """Real (send_at, plan_reason, state, error) of the first 1,000 contacts, to fill ceiling B's rows."""
    from shared.planning import RunContext, plan_contact

    conn = await connect(dsn)
    try:
        campaign = await conn.fetchrow("SELECT * FROM campaigns WHERE id = $1", state["big"])
        account = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", state["account_id"])
        context = RunContext.build("run_sample", campaign, account, datetime.now(UTC))
        contacts = await conn.fetch(
            "SELECT id, first_name, last_name, email, phone, company, timezone, metadata,"
            " opted_out_sms, opted_out_email, opted_out_voice FROM contacts LIMIT 1000"
        )
        return [(row[8], row[9], row[7], row[10]) for row in (plan_contact(context, c) for c in contacts)]
    finally:
        await conn.close()


async def copy_records(dsn: str, state: dict[str, Any], n: int) -> list[tuple]:
    """N precomputed delivery rows (PLAN_COLUMNS order), as the planner would write them."""
    samples = await sample_plans(dsn, state)
    run_id, campaign_id, account_id = new_id("run"), state["big"], state["account_id"]
    ids, phones = state["ids"], state["phones"]
    return [
        (new_id("delivery"), run_id, campaign_id, account_id, ids[k], "sms", phones[k], s[2], s[0], s[1], s[3])
        for k, s in ((k, samples[k % len(samples)]) for k in range(n))
    ]


async def ceiling_copy(dsn: str, records: list[tuple]) -> float:
    """Rows/s of one bare COPY of the precomputed rows into `deliveries` (rolled back, then VACUUM)."""
    run_id, campaign_id, account_id = records[0][1], records[0][2], records[0][3]
    conn = await connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                "INSERT INTO runs (id, campaign_id, account_id, seq, status) VALUES ($1, $2, $3, 999, 'planned')",
                run_id, campaign_id, account_id,
            )
            started = time.perf_counter()
            await conn.copy_records_to_table("deliveries", records=records, columns=deliveries.PLAN_COLUMNS)
            elapsed = time.perf_counter() - started
        finally:
            await tx.rollback()
        await conn.execute("VACUUM deliveries")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return len(records) / elapsed


async def empty_deliveries(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute("TRUNCATE deliveries CASCADE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# ------------------------------------------------------------------------- the real thing (child)


async def _child_plan(dsn: str, account_id: str, campaign_id: str, profile: bool) -> dict[str, Any]:
    """Plan one campaign exactly as the scheduler does; timings and this process's peak RSS."""
    from services.scheduler import handlers as handlers_module
    from services.scheduler.handlers import Handlers
    from shared.messages.campaign_events import CampaignLaunched

    spent = {"fetch": 0.0, "copy": 0.0, "batches": 0}
    real_copy, real_recipients = deliveries.copy_planned, deliveries.recipients_after

    async def timed_copy(conn: asyncpg.Connection, records: list[tuple]) -> None:
        started = time.perf_counter()
        await real_copy(conn, records)
        spent["copy"] += time.perf_counter() - started

    async def timed_recipients(*args: Any, **kwargs: Any) -> list[asyncpg.Record]:
        started = time.perf_counter()
        try:
            return await real_recipients(*args, **kwargs)
        finally:
            spent["fetch"] += time.perf_counter() - started
            spent["batches"] += 1

    # Timing wrappers only (two calls per chunk): the handler code itself is unchanged.
    handlers_module.deliveries.copy_planned = timed_copy  # type: ignore[assignment]
    handlers_module.deliveries.recipients_after = timed_recipients  # type: ignore[assignment]

    async with create_pool(dsn, min_size=1, max_size=2) as pool:
        handlers = Handlers(pool, chunk=Settings().plan_chunk)  # the scheduler's own chunk size
        message = CampaignLaunched(account_id=account_id, campaign_id=campaign_id, channel="sms")
        rss_before = peak_rss_mb()
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        # as the scheduler does: the launch plans the first contacts, the planner loop the rest
        await handlers.campaign_launched(message)
        while await handlers.plan_chunks(1_000_000):
            pass
        if profiler:
            profiler.disable()
        total = time.perf_counter() - started
        count = await pool.fetchval("SELECT count(*) FROM deliveries WHERE campaign_id = $1", campaign_id)
    result = {
        "total": total, "fetch": spent["fetch"], "copy": spent["copy"], "batches": spent["batches"],
        "count": count, "rss_before_mb": rss_before, "rss_peak_mb": peak_rss_mb(), "vm_hwm_mb": _vm_hwm_mb(),
    }
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
        stats.print_stats(22)
        out.write("\n---- by cumulative time ----\n")
        stats.sort_stats("cumulative").print_stats(30)
        result["profile"] = out.getvalue()
    return result


def _vm_hwm_mb() -> float:
    """Peak RSS of this process's current address space (VmHWM), a cross-check of ru_maxrss."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Launcher:
    """A small helper process, started before the benchmark allocates anything big, that starts
    the planning children. ru_maxrss survives exec (Linux keeps the high-water mark of the address
    space a process replaced), so a child spawned straight from this large parent would report
    the parent's size instead of its own."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--launcher"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def run(self, dsn: str, account_id: str, campaign_id: str, profile: bool = False) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps([dsn, account_id, campaign_id, profile]) + "\n")
        self._proc.stdin.flush()
        reply = json.loads(self._proc.stdout.readline() or '{"error": "launcher died"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)


def launcher_loop() -> int:
    """Read child requests (JSON lines) from stdin; run each child; answer with its JSON result."""
    for line in sys.stdin:
        dsn, account_id, campaign_id, profile = json.loads(line)
        with tempfile.NamedTemporaryFile("r", suffix=".json") as result_file:
            command = [
                sys.executable, str(Path(__file__).resolve()), "--child", dsn, account_id, campaign_id,
                result_file.name,
            ] + (["--profile"] if profile else [])
            done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                reply = {"error": f"child failed ({done.returncode}):\n{done.stderr[-4000:]}"}
            else:
                reply = json.loads(Path(result_file.name).read_text())
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


# ------------------------------------------------------------------------------------------ main


def _rate(value: float) -> str:
    return f"{value:>12,.0f}"


async def bench(args: argparse.Namespace) -> int:
    n, small = args.contacts, args.memory_small or max(1, args.contacts // 10)
    name = f"campaigns_bench_{secrets.token_hex(4)}"
    dsn = f"{SERVER}/{name}"
    print(f"database {name}; N = {n:,} contacts; memory compared with N = {small:,};"
          f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    launcher = Launcher()  # before anything big is allocated (see Launcher)
    await migrate(dsn)
    try:
        started = time.perf_counter()
        state = await setup(dsn, n, small, args.profile_contacts if args.profile else 0)
        print(f"set-up (not timed): {time.perf_counter() - started:.1f} s", flush=True)

        zone_rate = ceiling_zoneinfo(n, state["wall"])
        print(f"ceiling A, zoneinfo loop: {zone_rate:,.0f} contacts/s", flush=True)
        records = await copy_records(dsn, state, n)
        copy_before = await ceiling_copy(dsn, records)
        print(f"ceiling B, bare COPY: {copy_before:,.0f} rows/s", flush=True)
        account_id = state["account_id"]

        big = launcher.run(dsn, account_id, state["big"])
        if big["count"] != n:
            raise SystemExit(f"FAIL: {big['count']} deliveries for {n} contacts")
        print(f"planning run (N={n:,}): {big['total']:.1f} s, {big['count']:,} deliveries", flush=True)
        little = launcher.run(dsn, account_id, state["small"])
        if little["count"] != small:
            raise SystemExit(f"FAIL: {little['count']} deliveries for {small} contacts")
        # Ceiling B again on the emptied table: the machine may be shared, so average both samples.
        await empty_deliveries(dsn)
        copy_after = await ceiling_copy(dsn, records)
        del records
        copy_rate = (copy_before + copy_after) / 2

        total_rate = n / big["total"]
        plan_seconds = big["total"] - big["fetch"] - big["copy"]
        plan_rate = n / plan_seconds
        copy_ratio = total_rate / copy_rate
        memory_ratio = big["rss_peak_mb"] / little["rss_peak_mb"]
        rows = [
            ("ceiling A: bare zoneinfo loop", _rate(zone_rate), "contacts/s"),
            ("ceiling B: bare COPY of the delivery rows", _rate(copy_rate),
             f"rows/s (mean of {copy_before:,.0f} before, {copy_after:,.0f} after)"),
            ("scheduler: plan + store (campaign_launched)", _rate(total_rate), "contacts/s"),
            (f"  of which fetch {big['fetch']:.1f} s, COPY {big['copy']:.1f} s, plan {plan_seconds:.1f} s", "", ""),
            ("  planning alone (total - fetch - COPY)", _rate(plan_rate), "contacts/s"),
            ("ratio plan+store / bare COPY", f"{copy_ratio:>12.0%}", f"target >= {TARGET_COPY_RATIO:.0%}"),
            ("ratio planning alone / zoneinfo loop", f"{plan_rate / zone_rate:>12.1%}", ""),
            ("ratio plan+store / zoneinfo loop", f"{total_rate / zone_rate:>12.1%}", ""),
            (f"peak RSS planning N={n:,} (ru_maxrss)", f"{big['rss_peak_mb']:>9,.1f} MB",
             f"(before planning {big['rss_before_mb']:.1f}; VmHWM {big['vm_hwm_mb']:.1f})"),
            (f"peak RSS planning N={small:,} (ru_maxrss)", f"{little['rss_peak_mb']:>9,.1f} MB",
             f"(before planning {little['rss_before_mb']:.1f}; VmHWM {little['vm_hwm_mb']:.1f})"),
            ("ratio peak RSS N / N/10", f"{memory_ratio:>12.3f}", f"target <= {TARGET_MEMORY_RATIO:.2f}"),
        ]
        print()
        for label, value, unit in rows:
            print(f"{label:<52} {value:>14}  {unit}")
        print(f"(load average at the end: {os.getloadavg()[0]:.2f}; other work on this machine skews both sides)")
        copy_ok, memory_ok = copy_ratio >= TARGET_COPY_RATIO, memory_ratio <= TARGET_MEMORY_RATIO
        print(f"\ntargets: plan+store >= 50% of bare COPY: {'MET' if copy_ok else 'NOT MET'};"
              f" memory within 10%: {'MET' if memory_ok else 'NOT MET'}")

        if args.profile:
            profiled = launcher.run(dsn, account_id, state["profiled"], profile=True)
            print(f"\ncProfile of planning {args.profile_contacts:,} contacts"
                  f" ({profiled['total']:.1f} s under the profiler):")
            print(profiled["profile"])
        return 0 if copy_ok and memory_ok else 1
    finally:
        launcher.close()
        await drop_database(f"{SERVER}/{name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts in the campaign (default 1,000,000)")
    parser.add_argument(
        "--memory-small", type=int, default=0, help="the smaller campaign for the memory check (default N/10)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile a separate planning run")
    parser.add_argument("--profile-contacts", type=int, default=100_000, help="contacts in the profiled run")
    parser.add_argument("--launcher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("DSN", "ACCOUNT", "CAMPAIGN", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.launcher:
        return launcher_loop()
    if args.child:
        dsn, account_id, campaign_id, result_path = args.child
        result = asyncio.run(_child_plan(dsn, account_id, campaign_id, args.profile))
        Path(result_path).write_text(json.dumps(result))
        return 0
    if args.profile and args.profile_contacts > args.contacts:
        args.profile_contacts = args.contacts
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
