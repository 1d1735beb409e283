"""CSV contact import against the bare asyncpg COPY of the same rows, in one run, on one database.

    .venv/bin/python benchmarks/bench_import.py [--rows 1000000]

Writes a CSV file (E.164 and national phone formats, a few bad rows), COPYs its rows into a plain
table three times (the ceiling is the median), then imports the file through the shared import core in a child process
(so its peak RSS is the import's own) and prints rows/s of both, the ratio and the peak memory.
With --reimport it then imports the same file again (every contact an update: the upsert path).
The database is created for the run and dropped afterwards (CAMPAIGNS_DATABASE_URL names the
server; default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from shared.contact_import import import_file  # noqa: E402
from shared.db import accounts  # noqa: E402
from shared.db.migrate import drop_database, migrate  # noqa: E402
from shared.db.pool import connect  # noqa: E402

HEADER = ["First Name", "Last Name", "Email", "Phone Number", "Company", "Time Zone", "plan", "signup_date", "score"]
AREAS = ("212", "305", "312", "415", "512", "617", "702", "808", "917", "206")
ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "", "", "")
#: One row in this many is bad (phone, email or zone, in turn).
BAD_EVERY = 1000
#: Bare COPY runs; the ceiling is their median (one run of about a second swings with whatever
#: else the machine is doing, e.g. the checkpoint of an earlier run).
CEILING_RUNS = 3


def write_csv(path: Path, rows: int) -> None:
    """A contacts file: unique US numbers, one in ten in national format, a few bad rows."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for i in range(rows):
            area, local = AREAS[i % len(AREAS)], f"{(i // len(AREAS)) % 10_000_000:07d}"
            phone = f"({area}) {local[:3]}-{local[3:]}" if i % 10 == 9 else f"+1{area}{local}"
            email, zone = f"user{i}@example.com", ZONES[i % len(ZONES)]
            if i % BAD_EVERY == BAD_EVERY - 1:
                kind = (i // BAD_EVERY) % 3
                phone = "12" if kind == 0 else phone
                email = "not-an-email" if kind == 1 else email
                zone = "Mars/Base" if kind == 2 else zone
            out.writerow(
                [
                    f"First{i}",
                    f"Last{i}",
                    email,
                    phone,
                    f"Company {i % 5000}",
                    zone,
                    ("free", "pro", "team")[i % 3],
                    f"2025-{i % 12 + 1:02d}-01",
                    str(i % 100),
                ]
            )


async def bare_copy(database_url: str, path: Path, runs: int = CEILING_RUNS) -> tuple[int, list[float]]:
    """COPY every row of the file into a new plain table, `runs` times: (rows, seconds of each
    run); reading the file is not timed."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        records = [tuple(row) for row in reader]
    conn = await asyncpg.connect(database_url)
    took = []
    try:
        for run in range(runs):
            await conn.execute(
                f"CREATE TABLE bare_contacts_{run} (first_name text, last_name text, email text, phone text, "
                "company text, timezone text, plan text, signup_date text, score text)"
            )
            started = time.perf_counter()
            await conn.copy_records_to_table(f"bare_contacts_{run}", records=records)
            took.append(time.perf_counter() - started)
            await conn.execute(f"DROP TABLE bare_contacts_{run}")
        return len(records), took
    finally:
        await conn.close()


async def child(database_url: str, account_id: str, path: Path) -> None:
    """Import the file through the shared core and print seconds, counts and peak RSS as JSON."""
    started = time.perf_counter()
    summary = await import_file(database_url, account_id, path, country="US")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = summary.as_dict()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_mb": peak_rss_mb(),
                "listed_errors": len(result.pop("errors")),
                **result,
            }
        )
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would include the parent's pages
    at fork time, since Linux keeps it across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def create_account(database_url: str) -> str:
    """An account to import into."""
    conn = await connect(database_url)
    try:
        return await accounts.create_account(conn, "bench", Decimal(0))
    finally:
        await conn.close()


def run_child(database_url: str, account_id: str, path: Path) -> dict[str, Any]:
    """Import the file in a child process; its JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", database_url, account_id, str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        sys.exit(f"the import failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    """Run the benchmark (or, with --child, the import half of it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reimport", action="store_true", help="import the file a second time (all updates)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "ACCOUNT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child[0], args.child[1], Path(args.child[2])))
        return
    server = os.environ.get("CAMPAIGNS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database_url = urlunsplit(urlsplit(server)._replace(path=f"/campaigns_bench_{uuid.uuid4().hex[:8]}"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        started = time.perf_counter()
        write_csv(path, args.rows)
        size_mb, took = path.stat().st_size / 1e6, time.perf_counter() - started
        load = os.getloadavg()[0]
        print(f"file: {args.rows:,} rows, {size_mb:.0f} MB, written in {took:.1f}s; load average {load:.2f}")
        asyncio.run(migrate(database_url))
        try:
            rows, took = asyncio.run(bare_copy(database_url, path))
            copy_rate = rows / statistics.median(took)
            runs = ", ".join(f"{rows / seconds:,.0f}" for seconds in took)
            print(f"bare asyncpg COPY: {rows:,} rows, median of {len(took)} runs = {copy_rate:,.0f} rows/s ({runs})")
            account_id = asyncio.run(create_account(database_url))
            result = run_child(database_url, account_id, path)
            again = run_child(database_url, account_id, path) if args.reimport else None
        finally:
            asyncio.run(drop_database(database_url))
    rate = result["rows"] / result["seconds"]
    print(
        f"import (shared core, batches, upsert): {result['rows']:,} rows in {result['seconds']:.2f}s"
        f" = {rate:,.0f} rows/s "
        f"(created {result['created']:,}, updated {result['updated']:,}, rejected {result['rejected']:,})"
    )
    print(f"ratio import / bare COPY: {rate / copy_rate:.1%} (target >= 10%)")
    print(f"import CPU in the importing process: {result['cpu_seconds']:.1f}s of {result['seconds']:.1f}s")
    print(f"import peak memory (importing process, VmHWM): {result['peak_mb']:.0f} MB (target < 200 MB)")
    if again is not None:
        print(
            f"re-import of the same file: {again['rows'] / again['seconds']:,.0f} rows/s "
            f"(updated {again['updated']:,}, created {again['created']:,}, {again['seconds']:.2f}s)"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
