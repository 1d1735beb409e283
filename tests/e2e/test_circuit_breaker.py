"""The circuit breaker pauses a campaign whose sends fail (or draw opt-outs) above its thresholds,
with the reason, and sends nothing more until a person resumes it; a campaign whose every delivery
failed ends `failed`, saying why."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_provider(fake_twilio):
    """Each message-create request takes 0.1 s: a campaign at max_concurrent 1 is still running
    when its first sends have finished."""
    fake_twilio.response_delay = 0.1
    yield fake_twilio
    fake_twilio.response_delay = 0.0


async def _launch(http, system, account, phones, **extra) -> str:
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Cb"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "breaker", "agent_id": agent["id"], "type": "sms", "contacts": phones,
         "message_template": "Hello", "status": "scheduled", **extra},
    )
    assert status == 201, body
    return body["id"]


async def _campaign(http, system, account, campaign_id) -> dict:
    status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
    assert status == 200, body
    return body


async def _reach(http, system, account, campaign_id, wanted: str) -> dict:
    async def reached():
        body = await _campaign(http, system, account, campaign_id)
        return body if body["status"] == wanted else None

    return await wait_until(reached, timeout=60, message=f"campaign {wanted}")


async def _nothing_in_flight(db, campaign_id) -> bool:
    return not await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state IN ('queued', 'sending')", campaign_id
    )


async def _stays(condition, seconds: float) -> None:
    """`condition` holds throughout `seconds` (what must not happen does not, for that long)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await condition()
        await asyncio.sleep(0.05)


async def test_mostly_dead_numbers_pause_the_campaign_until_a_person_resumes_it(
    http, system, account, slow_provider, db
):
    dead = [new_phone() for _ in range(18)]
    alive = [new_phone(), new_phone()]
    for phone in dead:
        slow_provider.script[phone] = [(400, 21211)]  # not a valid phone number: fails for good
    phones = dead + alive
    campaign_id = await _launch(
        http, system, account, phones, max_concurrent=1,
        circuit_breaker={"failure_rate": 0.5, "min_sends": 10},
    )
    paused = await _reach(http, system, account, campaign_id, "paused")
    reason = paused["paused_reason"]
    assert (reason["code"], reason["threshold"]) == ("failure_rate", 0.5), reason
    assert reason["value"] > 0.5, reason
    assert 10 <= reason["window"] < len(phones), reason
    assert paused["circuit_breaker"] == {
        "enabled": True, "failure_rate": 0.5, "min_sends": 10,
        "opt_out_rate": 0.05, "bounce_rate": 0.1,  # the defaults for what it did not set
    }

    # sends stop: once what was in flight has finished, nothing more reaches the provider
    await wait_until(lambda: _nothing_in_flight(db, campaign_id), message="in-flight sends finished")
    sent = sum(len(slow_provider.sent_to(p)) for p in phones)
    assert sent < len(phones)

    async def nothing_more() -> bool:
        return sum(len(slow_provider.sent_to(p)) for p in phones) == sent

    await _stays(nothing_more, 1.5)

    # a person resumes: a new window, fewer than min_sends left, so it runs to the end
    status, body = await call(http, "POST", f"{system.api_url}/campaigns/{campaign_id}/resume", account.headers)
    assert status == 200, body
    final = await _reach(http, system, account, campaign_id, "completed")
    assert final["paused_reason"] is None
    assert [len(slow_provider.sent_to(p)) for p in phones] == [1] * len(phones)  # each exactly once


async def test_a_campaign_with_the_breaker_off_runs_to_the_end_and_fails_when_nothing_succeeded(
    http, system, account, fake_twilio
):
    dead = [new_phone() for _ in range(12)]
    for phone in dead:
        fake_twilio.script[phone] = [(400, 21211)]
    campaign_id = await _launch(
        http, system, account, dead, circuit_breaker=False, max_concurrent=2, retry_interval="1s"
    )
    final = await _reach(http, system, account, campaign_id, "failed")
    assert final["circuit_breaker"]["enabled"] is False
    assert final["failure_reason"].startswith("run 1: no delivery succeeded (12 failed; each: "), final
    assert "21211" in final["failure_reason"]
    assert [len(fake_twilio.sent_to(p)) for p in dead] == [1] * len(dead)
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
    assert (results["status"], results["failed"]) == ("failed", 12)


async def test_a_failed_campaign_says_most_often_only_of_an_error_seen_more_often_than_any_other(
    http, system, account, fake_twilio, db
):
    # every send failing with an error of its own; errors tied two to two; 21211 twice, 21614 once
    scripts = {"distinct": [21211, 21212, 21214], "tied": [21211, 21211, 21614, 21614], "clear": [21211, 21211, 21614]}
    launched = {}
    for name, codes in scripts.items():
        phones = [new_phone() for _ in codes]
        for phone, code in zip(phones, codes, strict=True):
            fake_twilio.script[phone] = [(400, code)]
        launched[name] = await _launch(http, system, account, phones, circuit_breaker=False)
    reason = {name: (await _reach(http, system, account, cid, "failed"))["failure_reason"]
              for name, cid in launched.items()}

    async def earliest(name: str) -> str:  # the example given: the first error seen
        return await db.fetchval(
            "SELECT error FROM deliveries WHERE campaign_id = $1 ORDER BY failed_at, error LIMIT 1", launched[name]
        )

    failed = "run 1: no delivery succeeded"
    assert reason["distinct"] == f"{failed} (3 failed; 3 different errors, e.g. {await earliest('distinct')})"
    assert reason["tied"] == f"{failed} (4 failed; 2 different errors, e.g. {await earliest('tied')})"
    assert reason["clear"].startswith(f"{failed} (3 failed; most often: twilio 400 code 21211"), reason
    assert reason["clear"].endswith(" (2))"), reason


async def test_opt_outs_above_the_threshold_pause_the_campaign(http, system, account, slow_provider):
    slow_provider.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    phones = [new_phone() for _ in range(40)]
    campaign_id = await _launch(
        http, system, account, phones, max_concurrent=1,
        circuit_breaker={"opt_out_rate": 0.1, "min_sends": 4},
    )

    async def four_sent():
        return [p for p in phones if slow_provider.sent_to(p)][:4] if sum(
            1 for p in phones if slow_provider.sent_to(p)) >= 4 else None

    first = await wait_until(four_sent, message="four sent")
    for phone in first[:2]:  # two of the first four text STOP
        future = asyncio.run_coroutine_threadsafe(
            slow_provider.inbound(phone, "+15005550006", "STOP"), slow_provider.thread.loop
        )
        await asyncio.wrap_future(future)
    paused = await _reach(http, system, account, campaign_id, "paused")
    assert paused["paused_reason"]["code"] == "opt_out_rate", paused
    assert paused["paused_reason"]["threshold"] == 0.1
    status, _body = await call(http, "POST", f"{system.api_url}/campaigns/{campaign_id}/cancel", account.headers)
    assert status == 200


async def test_bad_thresholds_are_a_422_naming_the_field(http, system, account):
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Cb"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "b", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
         "message_template": "Hi", "circuit_breaker": {"failure_rate": 2, "min_sends": 0}},
    )
    assert status == 422, body
    assert {d["field"] for d in body["error"]["details"]} == {
        "circuit_breaker.failure_rate", "circuit_breaker.min_sends"
    }, body
