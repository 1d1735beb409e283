"""Issue 10's smaller holes, each closed: runs paged with a cursor, a reply from a deleted
contact, CSV import limits, a large inline campaign that leaves the API answering."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.conftest import make_account, own_database
from tests.support import Service, call, free_port, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def test_runs_are_paged_with_a_cursor(http, system, account, db):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, campaign = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                  {"name": "daily", "type": "sms", "agent_id": agent["id"],
                                   "contacts": ["+14155550100"], "message_template": "hi"})
    assert status == 201, campaign
    for seq in range(1, 6):  # five runs of a recurring campaign, as the scheduler records them
        await db.execute(
            "INSERT INTO runs (id, campaign_id, account_id, seq, status, completed_at) "
            "VALUES ($1, $2, $3, $4, 'completed', now())", f"run_t{seq}_{campaign['id']}", campaign["id"],
            account.id, seq)
    url = f"{system.api_url}/campaigns/{campaign['id']}/runs"
    seen, cursor = [], None
    while True:
        status, page = await call(http, "GET", url + "?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                                  account.headers)
        assert status == 200, page
        assert len(page["data"]) <= 2
        seen += [r["run"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5]
    status, whole = await call(http, "GET", url, account.headers)
    assert ([r["run"] for r in whole["data"]], whole["next_cursor"]) == ([1, 2, 3, 4, 5], None)
    for bad in ("?cursor=nonsense", "?limit=0", "?limit=500"):
        status, error = await call(http, "GET", url + bad, account.headers)
        assert status == 422, (bad, error)
        assert error["error"]["details"][0]["field"] in ("cursor", "limit")


async def test_the_scheduler_ages_out_callbacks_and_handled_messages(db, system):
    # Given records past CAMPAIGNS_RETENTION_DAYS (30) and fresh ones
    tag = uuid.uuid4().hex
    for age, suffix in ((31, "old"), (29, "recent")):
        await db.execute(
            "INSERT INTO webhook_events (provider, kind, dedupe_key, payload, received_at) "
            "VALUES ('twilio', 'sms.status', $1, '{}', now() - make_interval(days => $2))", f"{tag}:{suffix}", age)
        await db.execute(
            "INSERT INTO processed_messages (consumer, message_id, processed_at) "
            "VALUES ('test', $1, now() - make_interval(days => $2))", f"{tag}:{suffix}", age)
    await db.execute(
        "INSERT INTO idempotency_keys (account_id, key, method, path, body_hash, created_at) "
        "SELECT id, $1, 'POST', '/x', '\\x00', now() - interval '25 hours' FROM accounts LIMIT 1", tag)

    # When the scheduler's retention job has run (every second in the tests)
    async def aged_out():
        events = await db.fetchval("SELECT count(*) FROM webhook_events WHERE dedupe_key LIKE $1", tag + "%")
        handled = await db.fetchval("SELECT count(*) FROM processed_messages WHERE message_id LIKE $1", tag + "%")
        keys = await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", tag)
        return (events, handled, keys) == (1, 1, 0)

    await wait_until(aged_out, timeout=30, message="old records deleted")
    # Then only the old ones went
    assert await db.fetchval("SELECT dedupe_key FROM webhook_events WHERE dedupe_key LIKE $1", tag + "%") == (
        f"{tag}:recent")
    assert await db.fetchval("SELECT message_id FROM processed_messages WHERE message_id LIKE $1", tag + "%") == (
        f"{tag}:recent")


def test_retention_deletes_in_batches_until_done(infra):
    from shared.db.pool import create_pool
    from shared.retention import purge

    async def scenario(url: str) -> tuple[dict[str, int], int]:
        async with create_pool(url, 1, 2) as pool:
            await pool.execute(
                "INSERT INTO webhook_events (provider, kind, dedupe_key, payload, received_at) "
                "SELECT 'twilio', 'sms.status', 'k' || i, '{}', now() - make_interval(hours => (51 - i) * 24 - 12) "
                "FROM generate_series(1, 30) i")  # 49.5 to 20.5 days old, in id order: 20 past 30 days
            purged = await purge(pool, days=30, batch=10)
            return purged, await pool.fetchval("SELECT count(*) FROM webhook_events")

    with own_database(infra, "retention") as url:  # no scheduler of its own deletes anything meanwhile
        purged, left = asyncio.run(scenario(url))
    assert purged == {"webhook_events": 20, "processed_messages": 0, "idempotency_keys": 0}  # batches of 10, 10, 0
    assert left == 10


@pytest.fixture(scope="module")
def small_import_api(system, tmp_path_factory):
    """One more API process on the run's database, taking imports of 4,000 bytes, one per account."""
    port = free_port()
    api = Service("api-small-imports", ["api"], {
        **system.env, "CAMPAIGNS_API_PORT": str(port),
        "CAMPAIGNS_IMPORT_MAX_BYTES": "4000", "CAMPAIGNS_IMPORT_CONCURRENCY": "1", "CAMPAIGNS_DB_POOL_MAX": "8",
    }, tmp_path_factory.mktemp("small-imports"))
    api.start()
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(url + "/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

    asyncio.run(wait_until(ready, timeout=30))
    yield url
    api.stop()


def _csv(rows: int) -> bytes:
    return ("phone,first_name\n" + "".join(f"{new_phone()},Ann\n" for _ in range(rows))).encode()


async def test_an_import_larger_than_the_limit_is_a_413_naming_it(http, small_import_api, account):
    url = small_import_api + "/contacts/import"
    headers = {**account.headers, "Content-Type": "text/csv"}
    async with http.post(url, data=_csv(20), headers=headers) as response:
        assert response.status == 200, await response.text()
    big = _csv(400)  # about 8,000 bytes
    async with http.post(url, data=big, headers=headers) as response:  # its length announced
        assert response.status == 413
        error = await response.json()
    reason = "larger than 4000 bytes (CAMPAIGNS_IMPORT_MAX_BYTES)"
    assert error["error"]["details"] == [{"field": "body", "reason": reason}]

    async def streamed():  # no length announced: refused once the limit is passed
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    async with http.post(url, data=streamed(), headers=headers) as response:
        assert response.status == 413
        assert "4,000 bytes" in (await response.json())["error"]["message"]


async def test_a_second_import_of_one_account_at_once_is_a_429_with_retry_after(http, small_import_api, account, db):
    url = small_import_api + "/contacts/import"
    headers = {**account.headers, "Content-Type": "text/csv"}
    release, started = asyncio.Event(), asyncio.Event()

    async def slow():
        yield b"phone,first_name\n"
        started.set()
        await release.wait()
        yield f"{new_phone()},Ann\n".encode()

    async def first() -> int:
        async with http.post(url, data=slow(), headers=headers) as response:
            return response.status

    running = asyncio.create_task(first())
    await started.wait()

    async def first_holds_the_slot() -> bool:  # (asked before, a second import could take the slot first)
        held = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objid = hashtext($1 || ':0')::oid AND objsubid = 2",
            account.id,
        )
        return bool(held)

    await wait_until(first_holds_the_slot, timeout=10, message="the first import holding the account's slot")

    async def refused():
        async with http.post(url, data=_csv(2), headers=headers) as response:
            body = await response.json()
            return (response.status, response.headers.get("Retry-After"), body) if response.status == 429 else None

    _status, retry_after, body = await wait_until(refused, timeout=10, message="the second import refused")
    assert retry_after == "30"
    assert body["error"]["code"] == "too_many_requests"
    assert "CAMPAIGNS_IMPORT_CONCURRENCY" in body["error"]["message"]
    assert body["error"]["details"][0]["reason"].startswith("at most 1 import(s) at once")
    other = await make_account(db)  # another account's import is its own
    async with http.post(url, data=_csv(2), headers={**other.headers, "Content-Type": "text/csv"}) as response:
        assert response.status == 200
    release.set()
    assert await running == 200
    async with http.post(url, data=_csv(2), headers=headers) as response:  # the slot was given back
        assert response.status == 200


async def test_a_campaign_with_100000_inline_contacts_leaves_the_api_answering(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    base = int(uuid.uuid4().int % 9_000_000)
    contacts = [{"phone": f"+1415{(base + i) % 10_000_000:07d}", "first_name": "Ann", "plan": "Pro"}
                for i in range(100_000)]
    body = {"name": "big", "type": "sms", "agent_id": agent["id"], "contacts": contacts,
            "message_template": "Hi {{first_name}}, your {{plan}} plan"}
    waits: list[float] = []
    done = asyncio.Event()

    async def meanwhile() -> None:  # GET /healthz again and again while the campaign is created
        while not done.is_set():
            started = asyncio.get_running_loop().time()
            async with http.get(system.api_url + "/healthz") as response:
                assert response.status == 200
            waits.append(asyncio.get_running_loop().time() - started)

    pinger = asyncio.create_task(meanwhile())
    try:
        status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers, body)
    finally:
        done.set()
        await pinger
    assert status == 201, created
    assert created["total_contacts"] == 100_000
    assert len(waits) >= 5, waits  # it took a while, and the API answered all along
    assert max(waits) < 1.0, sorted(waits)[-5:]
