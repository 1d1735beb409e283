"""The dispatcher's lanes on the real PostgreSQL, sending through the real twilio client to the fake
Twilio: commands whose deliveries are of every kind each take their own path, in one round."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from services.dispatcher.lanes import Lanes
from services.dispatcher.recorder import Recorder
from services.dispatcher.senders import SmsSender
from shared.db import sending
from shared.db.pool import connect, create_pool
from shared.db.sending import Outcome
from shared.ids import new_id
from shared.providers.twilio_sms import TwilioSms
from tests.conftest import TWILIO_SID, TWILIO_TOKEN, Infra, make_account, own_database
from tests.support import new_phone, wait_until

_CAMPAIGN = """
INSERT INTO campaigns (id, account_id, name, agent_id, channel, status, timezone, max_concurrent,
                       message_template, max_retries)
VALUES ($1, $2, 'lanes', $3, 'sms', $4, 'UTC', 10, $5, 0)
"""
_RUN = "INSERT INTO runs (id, campaign_id, account_id, seq, status) VALUES ($1, $2, $3, 1, 'planned')"
_CONTACT = """
INSERT INTO contacts (id, account_id, phone, first_name, opted_out_sms) VALUES ($1, $2, $3, $4, $5)
"""
_DELIVERY = """
INSERT INTO deliveries (id, run_id, campaign_id, account_id, contact_id, channel, to_address, state, send_at)
VALUES ($1, $2, $3, $4, $5, 'sms', $6, $7, now())
"""


async def _campaign(
    db, account_id: str, agent_id: str, status: str, template: str = "Hi {{first_name}}"
) -> tuple[str, str]:
    campaign_id, run_id = new_id("campaign"), new_id("run")
    await db.execute(_CAMPAIGN, campaign_id, account_id, agent_id, status, "Hi {{first_name}}")
    await db.execute(_RUN, run_id, campaign_id, account_id)
    return campaign_id, run_id


async def _delivery(
    db, account_id, campaign_id, run_id, *, first_name="Ann", opted_out=False, state="queued"
) -> tuple[str, str]:
    contact_id, delivery_id, phone = new_id("contact"), new_id("delivery"), new_phone()
    await db.execute(_CONTACT, contact_id, account_id, phone, first_name, opted_out)
    await db.execute(_DELIVERY, delivery_id, run_id, campaign_id, account_id, contact_id, phone, state)
    return delivery_id, phone


async def _running_campaign(db, max_concurrent: int = 10):
    """An account, and a running campaign of it with a run, as the scheduler's release leaves them."""
    account = await make_account(db)
    agent_id = new_id("agent")
    await db.execute("INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'Riley')", agent_id, account.id)
    campaign_id, run_id = await _campaign(db, account.id, agent_id, "running")
    await db.execute("UPDATE campaigns SET max_concurrent = $2 WHERE id = $1", campaign_id, max_concurrent)
    await db.execute("INSERT INTO campaign_flow (campaign_id) VALUES ($1)", campaign_id)
    return account, campaign_id, run_id


@pytest.fixture(scope="module")
def lanes_database(infra: Infra):
    """A database of its own: no service of the running system looks at these deliveries."""
    with own_database(infra, "lanes") as url:
        yield url


@pytest.fixture
async def db(lanes_database):
    conn = await connect(lanes_database)
    yield conn
    await conn.close()


async def test_a_batch_of_every_kind_takes_each_its_path(db, lanes_database, fake_twilio):
    # Given commands whose deliveries are: sendable, to a contact who opted out since, one whose
    # template lacks a variable, one sent already (a redelivered command), and whole commands of a
    # paused and of a cancelled campaign
    account = await make_account(db)
    agent_id = new_id("agent")
    await db.execute("INSERT INTO agents (id, account_id, name) VALUES ($1, $2, 'Riley')", agent_id, account.id)
    live, live_run = await _campaign(db, account.id, agent_id, "running")
    paused, paused_run = await _campaign(db, account.id, agent_id, "paused")
    cancelled, cancelled_run = await _campaign(db, account.id, agent_id, "cancelled")
    sendable = [await _delivery(db, account.id, live, live_run) for _ in range(3)]
    opted_out = await _delivery(db, account.id, live, live_run, opted_out=True)
    nameless = await _delivery(db, account.id, live, live_run, first_name=None)
    already = await _delivery(db, account.id, live, live_run, state="sent")
    on_pause = [await _delivery(db, account.id, paused, paused_run) for _ in range(2)]
    on_cancel = [await _delivery(db, account.id, cancelled, cancelled_run) for _ in range(2)]
    for campaign_id in (live, paused, cancelled):  # as the scheduler's release leaves them
        await db.execute("INSERT INTO campaign_flow (campaign_id) VALUES ($1) ON CONFLICT DO NOTHING", campaign_id)

    # When one dispatcher's lanes take the three commands at once
    provider = TwilioSms(TWILIO_SID, TWILIO_TOKEN, fake_twilio.url, timeout=5)
    try:
        async with create_pool(lanes_database, 1, 4) as pool:
            sender = SmsSender(provider, "http://127.0.0.1:9/", "+15005550006")
            async with Lanes(pool, sender, Recorder(pool, "sms"), capacity=50) as lanes:
                await asyncio.wait_for(
                    asyncio.gather(
                        lanes.submit(live, [d for d, _ in [*sendable, opted_out, nameless, already]]),
                        lanes.submit(paused, [d for d, _ in on_pause]),
                        lanes.submit(cancelled, [d for d, _ in on_cancel]),
                    ),
                    timeout=30,
                )
                # what /metrics says the dispatcher holds: nothing, once every command is done with
                assert REGISTRY.get_sample_value("campaigns_dispatch_held", {"channel": "sms"}) == 0
    finally:
        await provider.close()

    # Then each took its path: sent once, skipped, failed with the reason, left as it was, planned
    # again for the resume, cancelled; and only the sendable ones reached the provider
    rows = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, state, error, attempts, provider_id, cost FROM deliveries WHERE account_id = $1", account.id
        )
    }
    for delivery_id, phone in sendable:
        assert rows[delivery_id]["state"] == "sent"
        assert rows[delivery_id]["attempts"] == 1
        assert rows[delivery_id]["provider_id"].startswith("SM")
        assert rows[delivery_id]["cost"] is not None
        assert [r.get("Body") for r in fake_twilio.sent_to(phone)] == ["Hi Ann"]
    assert (rows[opted_out[0]]["state"], rows[opted_out[0]]["error"]) == ("skipped", "contact opted out of sms")
    assert rows[nameless[0]]["state"] == "failed"
    assert "first_name" in rows[nameless[0]]["error"]
    assert (rows[already[0]]["state"], rows[already[0]]["attempts"]) == ("sent", 0)
    assert {rows[d]["state"] for d, _ in on_pause} == {"planned"}
    assert {rows[d]["state"] for d, _ in on_cancel} == {"cancelled"}
    for _, phone in [opted_out, nameless, already, *on_pause, *on_cancel]:
        assert fake_twilio.sent_to(phone) == []
    # and the counts the triggers keep equal a recount; the campaign's charge was taken once a send
    counts = await db.fetchrow(
        "SELECT sum(sent) AS sent, sum(skipped) AS skipped, sum(failed) AS failed, sum(in_flight) AS in_flight"
        " FROM delivery_counts WHERE campaign_id = $1",
        live,
    )
    assert (counts["sent"], counts["skipped"], counts["failed"], counts["in_flight"]) == (4, 1, 1, 0)
    spent = await db.fetchval("SELECT 100 - balance FROM accounts WHERE id = $1", account.id)
    assert spent == sum(rows[d]["cost"] for d, _ in sendable)


async def test_a_hand_over_wakes_the_releaser_and_not_the_dispatchers(db, lanes_database):
    # Given a running campaign with one delivery in flight and one queued, and a session listening
    # on the releaser's channel (`flow`) and the dispatchers' (`room`)
    account, campaign_id, run_id = await _running_campaign(db)
    first, first_phone = await _delivery(db, account.id, campaign_id, run_id)
    second, second_phone = await _delivery(db, account.id, campaign_id, run_id)
    claim = await sending.claim(db, campaign_id, [first], ["Hi Ann"], [Decimal("0.0079")], [first_phone], 1)
    assert claim.claimed == [first]
    heard: dict[str, list[str]] = {"flow": [], "room": []}
    listener = await connect(lanes_database)
    try:
        for channel in heard:
            await listener.add_listener(channel, lambda _c, _p, ch, payload: heard[ch].append(payload))

        async def said(channel: str) -> None:
            async def arrived() -> bool:
                return campaign_id in heard[channel]

            await wait_until(arrived, timeout=10, interval=0.01, message=f"a NOTIFY on {channel}")
            await listener.fetchval("SELECT 1")  # every NOTIFY of that commit has arrived by now
            heard["flow"].clear()

        # When the first send is recorded and the queued one claimed in its place (a hand-over)
        handed = await sending.record(
            db, [Outcome(first, "sent", "SM1", "queued", next_id=second, next_rendered="Hi", next_address=second_phone)]
        )

        # Then the releaser hears that the queue got shorter, and no dispatcher is woken: the
        # campaign has no more room than before
        assert handed == {second}
        await said("flow")
        assert heard["room"] == []

        # When the second is recorded with nothing in its place, room comes free: both hear it
        assert await sending.record(db, [Outcome(second, "sent", "SM2", "queued")]) == set()
        await said("flow")
        assert heard["room"] == [campaign_id]
    finally:
        await listener.close()


async def test_a_campaign_at_its_limit_sends_on_by_hand_overs_without_claiming_again(db, lanes_database, fake_twilio):
    # Given a running campaign limited to two sends at a time, with twelve deliveries in one command
    account, campaign_id, run_id = await _running_campaign(db, max_concurrent=2)
    deliveries = [await _delivery(db, account.id, campaign_id, run_id) for _ in range(12)]
    no_room = {"channel": "sms", "result": "no_room"}
    claims_before = REGISTRY.get_sample_value("campaigns_dispatch_claims_total", no_room) or 0.0

    # When one dispatcher sends them through a provider that takes 100 ms a message (its lanes
    # poll far less often than the test lasts: only a NOTIFY, a command or a send's end wakes them)
    provider = TwilioSms(TWILIO_SID, TWILIO_TOKEN, fake_twilio.url, timeout=5)
    fake_twilio.response_delay = 0.1
    try:
        async with create_pool(lanes_database, 1, 4) as pool:
            sender = SmsSender(provider, "http://127.0.0.1:9/", "+15005550006")
            async with Lanes(pool, sender, Recorder(pool, "sms"), capacity=50, poll_s=60) as lanes:
                await asyncio.wait_for(lanes.submit(campaign_id, [d for d, _ in deliveries]), timeout=30)
    finally:
        fake_twilio.response_delay = 0.0
        await provider.close()

    # Then every one was sent once, each after the first two in a finished send's place: at most
    # the one claim right after the first found no room (a lane woken by every hand-over made one
    # per recorded batch)
    states = await db.fetch("SELECT state, attempts FROM deliveries WHERE campaign_id = $1", campaign_id)
    assert [(r["state"], r["attempts"]) for r in states] == [("sent", 1)] * 12
    for _, phone in deliveries:
        assert len(fake_twilio.sent_to(phone)) == 1
    claims = (REGISTRY.get_sample_value("campaigns_dispatch_claims_total", no_room) or 0.0) - claims_before
    assert claims <= 1


async def _second_campaign(db, account_id: str) -> tuple[str, str]:
    """Another running campaign of the account."""
    agent_id = await db.fetchval("SELECT id FROM agents WHERE account_id = $1", account_id)
    campaign_id, run_id = await _campaign(db, account_id, agent_id, "running")
    await db.execute("INSERT INTO campaign_flow (campaign_id) VALUES ($1)", campaign_id)
    return campaign_id, run_id


async def _lock_waits(db) -> bool:
    """Whether a session of this database waits for a row another holds."""
    return bool(await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"))


async def test_claims_racing_past_the_balance_hold_no_more_than_it(db, lanes_database):
    # Given an account with 0.05 left and two running campaigns of it, each with a 0.05 send queued
    account, first_campaign, first_run = await _running_campaign(db)
    await db.execute("UPDATE accounts SET balance = 0.05 WHERE id = $1", account.id)
    second_campaign, second_run = await _second_campaign(db, account.id)
    first, first_phone = await _delivery(db, account.id, first_campaign, first_run)
    second, second_phone = await _delivery(db, account.id, second_campaign, second_run)
    price = Decimal("0.05")
    other = await connect(lanes_database)
    try:
        # When the first campaign's claim holds the money, not yet committed, and the second's
        # claim, which read the balance before that commit, reaches the charge meanwhile
        async with db.transaction():
            claim = await sending.claim(db, first_campaign, [first], ["Hi"], [price], [first_phone], 1)
            assert claim.claimed == [first]
            racing = asyncio.create_task(
                sending.claim(other, second_campaign, [second], ["Hi"], [price], [second_phone], 1)
            )
            await wait_until(lambda: _lock_waits(db), timeout=10, interval=0.01, message="the race")

        # Then the second claim fails whole: nothing of it written, and the balance is at zero
        with pytest.raises(sending.FundsShort):
            await racing
    finally:
        await other.close()
    assert await db.fetchval("SELECT state FROM deliveries WHERE id = $1", second) == "queued"
    assert await db.fetchval("SELECT cost FROM deliveries WHERE id = $1", second) is None
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0")

    # And a claim now sees the balance: it claims nothing, short of the money it needs, with what
    # there is
    claim = await sending.claim(db, second_campaign, [second], ["Hi"], [price], [second_phone], 1)
    assert (claim.claimed, claim.needed, claim.free, claim.funds) == ([], price, 10, Decimal("0"))
    # but a delivery no longer to send (the first, sending already: a lane's stale copy) is nothing
    # the money stops
    claim = await sending.claim(db, first_campaign, [first], ["Hi"], [price], [first_phone], 1)
    assert (claim.claimed, claim.needed, claim.funds) == ([], None, Decimal("0"))


async def test_a_hand_over_racing_past_the_balance_is_recorded_without_it(db, lanes_database):
    # Given an account with 0.10, and a campaign with one 0.05 send in flight and one queued, and
    # another campaign of the account holding the last 0.05, not yet committed
    account, campaign_id, run_id = await _running_campaign(db)
    await db.execute("UPDATE accounts SET balance = 0.10 WHERE id = $1", account.id)
    other_campaign, other_run = await _second_campaign(db, account.id)
    in_flight, in_flight_phone = await _delivery(db, account.id, campaign_id, run_id)
    following, following_phone = await _delivery(db, account.id, campaign_id, run_id)
    elsewhere, elsewhere_phone = await _delivery(db, account.id, other_campaign, other_run)
    price = Decimal("0.05")
    claim = await sending.claim(db, campaign_id, [in_flight], ["Hi"], [price], [in_flight_phone], 1)
    assert claim.claimed == [in_flight]
    other = await connect(lanes_database)
    try:
        async with create_pool(lanes_database, 1, 2) as pool:
            recorder = Recorder(pool, "sms")
            async with other.transaction():
                claim = await sending.claim(other, other_campaign, [elsewhere], ["Hi"], [price], [elsewhere_phone], 1)
                assert claim.claimed
                # When the send is recorded with the queued one handed over in its place, its
                # statement having read the balance before the other claim commits
                sent = Outcome(in_flight, "sent", f"SM{uuid.uuid4().hex}", "queued", price,
                               next_id=following, next_rendered="Hi", next_cost=price, next_address=following_phone)
                recording = asyncio.create_task(recorder.record(sent))
                await wait_until(lambda: _lock_waits(db), timeout=10, interval=0.01, message="the race")

            # Then the outcome is recorded all the same, without the hand-over the money cannot cover
            assert await recording is False
    finally:
        await other.close()
    states = dict(await db.fetch("SELECT id, state FROM deliveries WHERE id = ANY($1)", [in_flight, following]))
    assert states == {in_flight: "sent", following: "queued"}
    assert await db.fetchval("SELECT balance FROM accounts WHERE id = $1", account.id) == Decimal("0")


async def test_a_claim_waiting_on_a_refund_sees_the_send_still_in_flight(db, lanes_database):
    # Given a campaign whose one send in flight holds all of its account's money (0.05), and a
    # second delivery queued
    account, campaign_id, run_id = await _running_campaign(db)
    await db.execute("UPDATE accounts SET balance = 0.05 WHERE id = $1", account.id)
    first, first_phone = await _delivery(db, account.id, campaign_id, run_id)
    second, second_phone = await _delivery(db, account.id, campaign_id, run_id)
    price = Decimal("0.05")
    assert (await sending.claim(db, campaign_id, [first], ["Hi"], [price], [first_phone], 1)).claimed == [first]
    recorder, claimer = await connect(lanes_database), await connect(lanes_database)
    try:
        # When the first send fails (its cost given back), not yet committed, while a claim for the
        # second has started and waits for the campaign's flow row
        async with recorder.transaction():
            await recorder.execute("UPDATE deliveries SET state = 'failed', cost = NULL WHERE id = $1", first)
            claiming = asyncio.create_task(
                sending.claim(claimer, campaign_id, [second], ["Hi"], [price], [second_phone], 1)
            )
            await wait_until(lambda: _lock_waits(db), timeout=10, interval=0.01, message="the claim waits")
        claim = await claiming
    finally:
        await recorder.close()
        await claimer.close()

    # Then the claim, which read the money before the refund, sees the send still in flight too:
    # short of money, but not with nothing in flight (the lane pauses a campaign only then; the
    # failed send's end wakes it to claim again)
    assert (claim.claimed, claim.needed, claim.funds, claim.in_flight) == ([], price, Decimal("0"), 1)
    assert (await sending.claim(db, campaign_id, [second], ["Hi"], [price], [second_phone], 1)).claimed == [second]


async def test_a_delivery_whose_contact_changed_address_since_it_was_loaded_is_neither_claimed_nor_handed_over(
    db, lanes_database
):
    # Given a running campaign with one send in flight and two queued, loaded by a dispatcher
    account, campaign_id, run_id = await _running_campaign(db)
    first, first_phone = await _delivery(db, account.id, campaign_id, run_id)
    second, second_phone = await _delivery(db, account.id, campaign_id, run_id)
    third, third_phone = await _delivery(db, account.id, campaign_id, run_id)
    price = Decimal("0.0079")
    loaded = {r["id"]: r["to_address"] for r in await sending.load(db, [second, third])}
    assert loaded == {second: second_phone, third: third_phone}
    assert (await sending.claim(db, campaign_id, [first], ["Hi"], [price], [first_phone], 1)).claimed == [first]

    # When both queued contacts change number before their claim and their hand-over
    moved = {second: new_phone(), third: new_phone()}
    for delivery_id, phone in moved.items():
        await db.execute("UPDATE contacts SET phone = $2 WHERE id = (SELECT contact_id FROM deliveries"
                         " WHERE id = $1)", delivery_id, phone)
    handed = await sending.record(db, [Outcome(first, "sent", f"SM{uuid.uuid4().hex}", "queued", price, next_id=second,
                                               next_rendered="Hi", next_cost=price, next_address=second_phone)])
    claim = await sending.claim(db, campaign_id, [third], ["Hi"], [price], [third_phone], 1)

    # Then neither is taken at the address it was loaded with; loaded again, each is claimed at
    # its new one, which its delivery records
    assert (handed, claim.claimed) == (set(), [])
    again = {r["id"]: r["to_address"] for r in await sending.load(db, [second, third])}
    assert again == moved
    claim = await sending.claim(db, campaign_id, [second, third], ["Hi", "Hi"], [price, price],
                                [moved[second], moved[third]], 2)
    assert claim.claimed == [second, third]
    rows = dict(await db.fetch("SELECT id, to_address FROM deliveries WHERE id = ANY($1)", [second, third]))
    assert rows == moved
