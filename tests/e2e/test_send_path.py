"""The send path at scale: campaigns share the dispatchers fairly, max_concurrent holds at any size
across replicas, the figures always equal a recount, and a tracker killed mid-commit loses nothing."""

from __future__ import annotations

import time

import aio_pika
import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def _campaign(http, system, account, phones, **extra) -> str:
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "send path",
            "agent_id": agent["id"],
            "type": "sms",
            "contacts": phones,
            "message_template": "Hello {{phone}}",
            "status": "scheduled",
            **extra,
        },
    )
    assert status == 201, body
    return body["id"]


async def _results(http, system, account, campaign_id) -> dict:
    status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert status == 200, body
    return body


def _sent(fake_twilio, phones) -> int:
    return sum(1 for p in phones if fake_twilio.sent_to(p))


async def test_a_small_campaign_is_not_held_behind_a_large_one_limited_to_one_send_at_a_slow_provider(
    http, system, account, fake_twilio
):
    # Given a slow provider and a large campaign that may send one message at a time
    large = [new_phone() for _ in range(200)]
    small = [new_phone() for _ in range(5)]
    fake_twilio.response_delay = 0.3
    fake_twilio.peak_in_flight = 0
    try:
        large_id = await _campaign(http, system, account, large, max_concurrent=1)
        await wait_until(lambda: _true(_sent(fake_twilio, large) >= 2), message="the large campaign sending")
        # When a small campaign (another account's would be the same) is launched behind it
        started = time.monotonic()
        small_id = await _campaign(http, system, account, small, max_concurrent=5)

        # Then the small campaign is sent within seconds, while the large one goes on one at a time
        async def small_sent() -> bool:
            return _sent(fake_twilio, small) == 5

        await wait_until(small_sent, timeout=10, message="the small campaign sent")
        took = time.monotonic() - started
        assert took < 10
        assert _sent(fake_twilio, large) < 100  # the large one is far from done
        assert fake_twilio.peak_in_flight <= 1 + 5
        final = await wait_until(
            lambda: _completed(http, system, account, small_id), timeout=30, message="small campaign completed"
        )
        assert (final["sent"], final["failed"]) == (5, 0)
    finally:
        fake_twilio.response_delay = 0.0
        await call(http, "POST", f"{system.api_url}/campaigns/{large_id}/cancel", account.headers)
    # and cancelling the large one stops it, having sent each of its contacts at most once
    done = await wait_until(lambda: _ended(http, system, account, large_id), timeout=30, message="large one ended")
    assert done["status"] == "cancelled"
    assert {len(fake_twilio.sent_to(p)) for p in large} <= {0, 1}


async def test_max_concurrent_200_reaches_200_in_flight_with_two_dispatchers_and_never_more(
    http, system, account, fake_twilio, db
):
    # Given a provider that takes a second per message and a campaign allowing 200 at once
    phones = [new_phone() for _ in range(600)]
    fake_twilio.response_delay = 1.0
    fake_twilio.peak_in_flight = 0
    try:
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=200)
        final = await wait_until(
            lambda: _completed(http, system, account, campaign_id), timeout=90, message="campaign completed"
        )
    finally:
        fake_twilio.response_delay = 0.0
    # Then the provider saw exactly 200 requests at once at the peak, never more, and each once
    assert fake_twilio.peak_in_flight == 200
    assert {len(fake_twilio.sent_to(p)) for p in phones} == {1}
    assert final["sent"] == 600
    assert await db.fetchval("SELECT in_flight FROM campaign_flow WHERE campaign_id = $1", campaign_id) == 0


#: A recount of one campaign's deliveries, and the same figures from the counts the triggers keep.
_RECOUNT = """
SELECT count(*) FILTER (WHERE state = 'planned') AS planned, count(*) FILTER (WHERE state = 'queued') AS queued,
       count(*) FILTER (WHERE state = 'sending') AS sending, count(*) FILTER (WHERE state = 'sent') AS sent,
       count(*) FILTER (WHERE state = 'delivered') AS delivered, count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE sent_at IS NOT NULL) AS with_sent_at,
       count(*) FILTER (WHERE delivered_at IS NOT NULL) AS with_delivered_at
FROM deliveries WHERE campaign_id = $1
"""
_COUNTS = """
SELECT COALESCE(sum(planned), 0) AS planned, COALESCE(sum(queued), 0) AS queued,
       COALESCE(sum(sending), 0) AS sending, COALESCE(sum(sent), 0) AS sent,
       COALESCE(sum(delivered), 0) AS delivered, COALESCE(sum(failed), 0) AS failed,
       COALESCE(sum(with_sent_at), 0) AS with_sent_at, COALESCE(sum(with_delivered_at), 0) AS with_delivered_at
FROM delivery_counts WHERE campaign_id = $1
"""


async def test_the_figures_equal_a_recount_of_the_deliveries_throughout_a_running_campaign(
    http, system, account, fake_twilio, db
):
    phones = [new_phone() for _ in range(600)]
    fake_twilio.response_delay = 0.01
    looks = []
    try:
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=20)
        # While it runs, look again and again: both in one snapshot, the counts and a recount
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with db.transaction(isolation="repeatable_read", readonly=True):
                counts = dict(await db.fetchrow(_COUNTS, campaign_id))
                recount = dict(await db.fetchrow(_RECOUNT, campaign_id))
            assert counts == {k: int(v) for k, v in recount.items()}, (counts, recount)
            looks.append(recount)
            if recount["delivered"] == 600:
                break
    finally:
        fake_twilio.response_delay = 0.0
    under_way = [r for r in looks if 0 < r["delivered"] < 600]
    assert len(under_way) >= 5, len(under_way)  # it really looked while sends were under way
    final = await wait_until(lambda: _completed(http, system, account, campaign_id), message="completed")
    assert (final["total_contacts"], final["sent"], final["delivered"], final["pending"]) == (600, 600, 600, 0)


async def test_a_tracker_killed_mid_commit_loses_no_status_and_nothing_is_sent_twice(
    http, system, account, fake_twilio
):
    phones = [new_phone() for _ in range(300)]
    tracker = system.services["tracker"]
    fake_twilio.response_delay = 0.01
    try:
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=20)

        async def some_delivered() -> bool:
            return (await _results(http, system, account, campaign_id))["delivered"] >= 50

        await wait_until(some_delivered, message="some delivered")
        # When the tracker dies (SIGKILL) with status callbacks being committed in batches
        tracker.kill()
    finally:
        fake_twilio.response_delay = 0.0
        tracker.start()
    await wait_until(lambda: _tracker_up(http, system), timeout=60, message="tracker back")

    # Then every status is applied in the end (the fake retries; what it gave up on is looked up),
    # and every contact got exactly one message
    async def all_delivered() -> dict | None:
        body = await _results(http, system, account, campaign_id)
        return body if body["delivered"] == 300 and body["status"] == "completed" else None

    final = await wait_until(all_delivered, timeout=90, message="every receipt applied")
    assert (final["sent"], final["failed"], final["pending"]) == (300, 0, 0)
    assert {len(fake_twilio.sent_to(p)) for p in phones} == {1}


async def test_deliveries_whose_commands_were_lost_are_sent_once_all_the_same(
    http, system, account, fake_twilio, infra, db
):
    # Given a campaign under way at a slow provider
    phones = [new_phone() for _ in range(60)]
    dispatchers = [system.services["dispatcher-1"], system.services["dispatcher-2"]]
    fake_twilio.response_delay = 0.1
    try:
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=2)
        await wait_until(lambda: _true(_sent(fake_twilio, phones) >= 4), message="sending")
        # When every SMS dispatcher dies and the commands waiting in the queue are lost (purged)
        for dispatcher in dispatchers:
            dispatcher.kill()
        connection = await aio_pika.connect(infra.amqp_url)
        async with connection, connection.channel() as channel:
            queue = await channel.get_queue(infra.prefix + "dispatch.sms", ensure=False)
            await queue.purge()
    finally:
        for dispatcher in dispatchers:
            dispatcher.start()
        fake_twilio.response_delay = 0.0
    # Then the deliveries left queued are planned and released again, and each contact still gets
    # exactly one message
    final = await wait_until(
        lambda: _completed(http, system, account, campaign_id), timeout=90, message="completed after the loss"
    )
    assert (final["sent"], final["failed"]) == (60, 0)
    assert {len(fake_twilio.sent_to(p)) for p in phones} == {1}
    requeued = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND plan_reason ? 'requeued_at'", campaign_id
    )
    assert requeued > 0  # (the loss really left some queued with no command)


async def _true(value: bool) -> bool:
    return value


async def _completed(http, system, account, campaign_id) -> dict | None:
    body = await _results(http, system, account, campaign_id)
    return body if body["status"] == "completed" else None


async def _ended(http, system, account, campaign_id) -> dict | None:
    body = await _results(http, system, account, campaign_id)
    return body if body["status"] in ("completed", "cancelled") and body["pending"] == 0 else None


async def _tracker_up(http, system) -> bool:
    try:
        async with http.get(system.tracker_url + "/healthz") as response:
            return response.status == 200
    except OSError:
        return False
