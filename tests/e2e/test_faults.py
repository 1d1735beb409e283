"""Faults lose nothing and send nothing twice: a killed dispatcher, scheduler or tracker, a provider
that says 429, a delivery left `sending`."""

from __future__ import annotations

import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def _campaign(http, system, account, phones, **extra) -> str:
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "fault", "agent_id": agent["id"], "type": "sms", "contacts": phones,
         "message_template": "Hello {{phone}}", "status": "scheduled", **extra},
    )
    assert status == 201, body
    return body["id"]


async def _completed(http, system, account, campaign_id, status: str = "completed") -> dict:
    async def done():
        _status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
        return body if body["status"] == status else None

    return await wait_until(done, timeout=90, message=f"campaign {status}")


async def test_a_dispatcher_killed_mid_send_loses_nothing_and_repeats_nothing(http, system, account, fake_twilio):
    phones = [new_phone() for _ in range(30)]
    victim = system.services["dispatcher-1"]
    fake_twilio.response_delay = 0.2
    try:
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=4)
        # When one dispatcher dies (SIGKILL) while requests are in flight
        await wait_until(lambda: _in_flight(fake_twilio), message="requests in flight")
        victim.kill()
    finally:
        fake_twilio.response_delay = 0.0
    try:
        final = await _completed(http, system, account, campaign_id)
    finally:
        victim.start()
    # Then every contact got exactly one message
    counts = {p: len(fake_twilio.sent_to(p)) for p in phones}
    assert set(counts.values()) == {1}, counts
    assert final["sent"] == 30
    assert final["failed"] == 0


async def _in_flight(fake) -> bool:
    return fake.in_flight > 0


async def test_429_then_accepted_sends_exactly_one(http, system, account, fake_twilio, db):
    phone = new_phone()
    fake_twilio.script[phone] = [(429, 20429)]
    campaign_id = await _campaign(http, system, account, [phone], retry_interval="1s", max_retries=2)
    final = await _completed(http, system, account, campaign_id)
    requests = fake_twilio.sent_to(phone)
    assert len(requests) == 2  # the refused one, then the accepted one
    assert len([m for m in fake_twilio.messages.values() if m["to"] == phone]) == 1
    assert final["sent"] == 1
    row = await db.fetchrow("SELECT attempts, state FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert row["attempts"] == 2


async def test_a_permanent_error_fails_at_once_and_opt_out_is_recorded(http, system, account, fake_twilio, db):
    invalid, stopped = new_phone(), new_phone()
    fake_twilio.script[invalid] = [(400, 21211)]
    fake_twilio.script[stopped] = [(400, 21610)]
    campaign_id = await _campaign(http, system, account, [invalid, stopped], retry_interval="1s", max_retries=3)
    final = await _completed(http, system, account, campaign_id, "failed")  # no delivery succeeded
    assert final["failed"] == 2
    assert len(fake_twilio.sent_to(invalid)) == len(fake_twilio.sent_to(stopped)) == 1
    assert await db.fetchval(
        "SELECT opted_out_sms FROM contacts WHERE account_id = $1 AND phone = $2", account.id, stopped
    ) is True
    errors = await db.fetch("SELECT error FROM deliveries WHERE campaign_id = $1 ORDER BY error", campaign_id)
    assert any("21211" in r["error"] for r in errors)


async def test_a_scheduler_killed_mid_release_releases_each_contact_once(http, system, account, fake_twilio, db):
    phones = [new_phone() for _ in range(1500)]
    scheduler = system.services["scheduler"]
    campaign_id = await _campaign(http, system, account, phones, max_concurrent=50)

    async def releasing() -> bool:
        return await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state <> 'planned'", campaign_id
        ) > 0

    await wait_until(releasing, interval=0.005, message="release started")
    scheduler.kill()
    try:
        released = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state <> 'planned'", campaign_id
        )
    finally:
        scheduler.start()
    final = await _completed(http, system, account, campaign_id)
    counts = [len(fake_twilio.sent_to(p)) for p in phones]
    assert counts.count(1) == 1500, {c: counts.count(c) for c in set(counts)}
    assert final["sent"] == 1500
    # the kill happened with part of the campaign not yet released (else this test proves less):
    # not yet planned (runs are planned in chunks), or planned and not yet released
    assert released < 1500


async def _true(value: bool) -> bool:
    return value


async def test_two_schedulers_at_once_release_each_contact_once(http, system, account, fake_twilio):
    from tests.support import Service

    extra = Service("scheduler-2", ["scheduler"], system.env, system.services["scheduler"].log_path.parent)
    extra.start()
    try:
        # Running (its signal handlers in place) before the campaign, so both really compete.
        await wait_until(lambda: _true("scheduler.started" in extra.output()), message="second scheduler up")
        phones = [new_phone() for _ in range(600)]
        campaign_id = await _campaign(http, system, account, phones, max_concurrent=50)
        final = await _completed(http, system, account, campaign_id)
    finally:
        assert extra.stop() == 0  # and it stops cleanly on SIGTERM
    counts = [len(fake_twilio.sent_to(p)) for p in phones]
    assert counts.count(1) == 600
    assert final["sent"] == 600


async def test_a_delivery_left_sending_is_looked_up_at_the_provider_before_any_resend(
    http, system, account, fake_twilio, db
):
    # Given two delivered messages whose outcome the dispatcher "lost" (as after a crash mid-call):
    # one the provider has, one it never got
    had, lost = new_phone(), new_phone()
    campaign_id = await _campaign(http, system, account, [had, lost], max_retries=2)
    await _completed(http, system, account, campaign_id)

    # (every status callback in first: a late `delivered` would otherwise land on the row set back
    # to `sending` below and resolve it before the reconciler looks, the race that made this flaky)
    async def all_in() -> bool:
        delivered = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND state = 'delivered'", campaign_id
        )
        return delivered == 2 and fake_twilio.background == 0

    await wait_until(all_in, message="every status callback in")
    await db.execute(
        "UPDATE deliveries SET state = 'sending', sent_at = NULL, provider_id = NULL, "
        "sending_at = now() - interval '1 hour', "
        "rendered = CASE WHEN to_address = $2 THEN 'never sent text' ELSE rendered END "
        "WHERE campaign_id = $1",
        campaign_id, lost,
    )
    await db.execute("UPDATE runs SET status = 'planned', completed_at = NULL WHERE campaign_id = $1", campaign_id)
    await db.execute("UPDATE campaigns SET status = 'running', completed_at = NULL WHERE id = $1", campaign_id)

    # Then the one the provider has is recorded as sent without a second request…
    async def resolved():
        rows = await db.fetch(
            "SELECT to_address, state, provider_id FROM deliveries WHERE campaign_id = $1", campaign_id
        )
        return {r["to_address"]: r for r in rows} if all(r["state"] != "sending" for r in rows) else None

    rows = await wait_until(resolved, timeout=60, message="reconciled")
    assert rows[had]["provider_id"] is not None
    assert len(fake_twilio.sent_to(had)) == 1

    # …and the one it never got is sent again, once
    async def resent():
        return len(fake_twilio.sent_to(lost)) == 2

    await wait_until(resent, timeout=60, message="the lost one sent again")
    await _completed(http, system, account, campaign_id)
    assert len(fake_twilio.sent_to(lost)) == 2  # the first, and the one resent after the lookup found nothing


async def test_receipts_lost_while_the_tracker_was_down_are_recovered(http, system, account, fake_twilio, db):
    # Given the tracker killed (SIGKILL) before a campaign: every status callback of its messages
    # finds no one (the fake retries a few times, as Twilio does, then gives up)
    phones = [new_phone() for _ in range(40)]
    tracker = system.services["tracker"]
    tracker.kill()
    try:
        campaign_id = await _campaign(http, system, account, phones)

        async def all_sent() -> bool:
            return all(fake_twilio.sent_to(p) for p in phones)

        await wait_until(all_sent, timeout=60, message="every message sent with the tracker down")

        async def callbacks_given_up() -> bool:
            return fake_twilio.background == 0

        await wait_until(callbacks_given_up, timeout=60, message="the fake gave up on every callback")
    finally:
        tracker.start()

        async def tracker_up() -> bool:
            try:
                async with http.get(system.tracker_url + "/healthz") as response:
                    return response.status == 200
            except OSError:
                return False

        await wait_until(tracker_up, timeout=60, message="tracker back")

    # Then the SMS dispatchers ask Twilio for the receipts that never came, and every one is delivered
    async def all_delivered():
        _status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/results", account.headers)
        return body if body["delivered"] == 40 else None

    final = await wait_until(all_delivered, timeout=60, message="every receipt recovered")
    assert (final["status"], final["sent"], final["failed"]) == ("completed", 40, 0)
    assert {len(fake_twilio.sent_to(p)) for p in phones} == {1}  # and nothing was sent twice
    looked_up = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND status_checks > 0", campaign_id
    )
    assert looked_up > 0


async def test_a_stuck_sms_is_not_taken_for_an_older_message_with_the_same_text(http, system, account, fake_twilio, db):
    # Given a delivery left `sending` ten minutes ago, and at the provider only a message to the
    # same number with the same text from two hours before (a previous run's, say)
    phone = new_phone()
    campaign_id = await _campaign(http, system, account, [phone])
    await _completed(http, system, account, campaign_id)

    async def all_in() -> bool:
        return fake_twilio.background == 0 and await db.fetchval(
            "SELECT state = 'delivered' FROM deliveries WHERE campaign_id = $1", campaign_id
        )

    await wait_until(all_in, message="its callbacks in")
    old = next(m for m in fake_twilio.messages.values() if m["to"] == phone)
    old["date_created"] = "Thu, 01 Jan 2026 08:00:00 +0000"
    await db.execute(
        "UPDATE deliveries SET state = 'sending', sent_at = NULL, delivered_at = NULL, provider_id = NULL,"
        " provider_status = NULL, sending_at = now() - interval '10 minutes' WHERE campaign_id = $1",
        campaign_id,
    )
    await db.execute("UPDATE runs SET status = 'planned', completed_at = NULL WHERE campaign_id = $1", campaign_id)
    await db.execute("UPDATE campaigns SET status = 'running', completed_at = NULL WHERE id = $1", campaign_id)

    # Then the reconciler does not take the old message for this attempt's: it sends it again, once
    async def resent() -> bool:
        return len(fake_twilio.sent_to(phone)) == 2

    await wait_until(resent, timeout=60, message="sent again")
    final = await _completed(http, system, account, campaign_id)
    assert len(fake_twilio.sent_to(phone)) == 2
    assert final["sent"] == 1
