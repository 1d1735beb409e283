"""What the service benchmarks (bench_api.py, bench_dispatch.py, bench_export.py) share: where the
servers are, process CPU, the server's connection count, warnings in the services' JSON logs,
starting the API with an account, and cleaning up a run's bus topology, database and log folder."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from shared.bus import topology
from shared.db import accounts
from shared.db.migrate import drop_database
from shared.db.pool import connect
from tests.support import Service, free_port

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


async def connections_in_use() -> tuple[int, int]:
    """(connections in use, max_connections) on the PostgreSQL server."""
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        return (await admin.fetchval("SELECT count(*) FROM pg_stat_activity"),
                int(await admin.fetchval("SHOW max_connections")))
    finally:
        await admin.close()


def log_problems(log: str) -> collections.Counter[str]:
    """Warning/error lines of a service's JSON log, by event and cause."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error", "critical"):
            cause = (entry.get("exception") or entry.get("error") or "").strip().splitlines()
            counts[f"{entry.get('event')}: {cause[-1][:90] if cause else ''}"] += 1
    return counts


async def drop_run(name: str, prefix: str, queues: tuple[str, ...] = ()) -> None:
    """Delete the run's bus topology (and `queues` of its own) and drop its database."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(AMQP)
        async with connection, connection.channel() as channel:
            await topology.delete(channel, prefix)
            for queue in queues:
                await channel.queue_delete(queue)
    await drop_database(f"{SERVER}/{name}")


def remove_logs(logs: Path) -> None:
    """Remove a run's log folder (kept when the run failed, to be read)."""
    with contextlib.suppress(Exception):
        for log in logs.iterdir():
            log.unlink()
        logs.rmdir()


async def wait_answering(url: str, alive: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until `url` answers 200 (a server starting); fail when `alive()` says its process exited."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError(f"the server behind {url} exited")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in time")


async def api_with_account(
    dsn: str, prefix: str, logs: Path, stoppers: list[Callable[[], Any]]
) -> tuple[Service, str, str, str]:
    """The API as its own process on a free port (stopped by `stoppers`) once it answers, and an
    account with a key: (the API, its base URL, the account's id, the key)."""
    port = free_port()
    env = {"CAMPAIGNS_DATABASE_URL": dsn, "CAMPAIGNS_AMQP_URL": AMQP, "CAMPAIGNS_AMQP_PREFIX": prefix,
           "CAMPAIGNS_API_PORT": str(port)}
    api = Service("api", ["api"], env, logs)
    api.start()
    stoppers.append(api.stop)
    base = f"http://127.0.0.1:{port}"
    await wait_answering(base + "/healthz", api.alive)
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            account_id = await accounts.create_account(conn, "bench", Decimal(1_000_000))
            key = await accounts.create_key(conn, account_id)
    finally:
        await conn.close()
    return api, base, account_id, key
