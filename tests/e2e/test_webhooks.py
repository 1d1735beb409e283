"""Twilio status callbacks at the tracker: signed, idempotent, order-safe."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import TWILIO_TOKEN
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def delivered(http, system, account, db):
    """A one-contact campaign whose message was delivered: (delivery row, status callback URL)."""
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "one", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
         "message_template": "hi", "status": "scheduled"},
    )
    assert status == 201, body

    async def row():
        return await db.fetchrow(
            "SELECT * FROM deliveries WHERE campaign_id = $1 AND state = 'delivered'", body["id"]
        )

    delivery = await wait_until(row, message="delivered")
    url = f"{system.tracker_url}/webhooks/twilio/sms/status?delivery_id={delivery['id']}"
    return delivery, url


def _form(delivery, status: str) -> dict[str, str]:
    return {"MessageSid": delivery["provider_id"], "MessageStatus": status, "AccountSid": "AC1",
            "To": delivery["to_address"], "From": "+15005550006"}


async def _post(http, url: str, form: dict[str, str], signature: str | None, token: str | None = None):
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    if token:
        headers["I-Twilio-Idempotency-Token"] = token
    async with http.post(url, data=form, headers=headers) as response:
        return response.status, await response.text()


async def test_bad_or_missing_signature_is_403_and_changes_nothing(http, delivered, db):
    delivery, url = delivered
    form = _form(delivery, "failed")
    wrong = RequestValidator("not-the-token").compute_signature(url, form)
    for signature in (wrong, None, ""):
        status, _ = await _post(http, url, form, signature)
        assert status == 403
    # a signature for another URL (replayed elsewhere) fails too
    other = RequestValidator(TWILIO_TOKEN).compute_signature(url + "x", form)
    assert (await _post(http, url, form, other))[0] == 403
    after = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery["id"])
    assert after["state"] == "delivered"
    assert after["failed_at"] is None
    assert after["updated_at"] == delivery["updated_at"]


async def test_a_repeated_callback_counts_once(http, system, account, delivered, db):
    delivery, url = delivered
    form = _form(delivery, "read")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    status, _ = await _post(http, url, form, signature, token="same-token-1")
    assert status == 200
    first = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery["id"])
    assert first["provider_status"] == "read"
    assert first["updated_at"] > delivery["updated_at"]
    # the same callback again, with its token or without (a retry, a replay): answered, changes nothing
    for token in ("same-token-1", None, None):
        status, _ = await _post(http, url, form, signature, token=token)
        assert status == 200
    again = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery["id"])
    assert dict(again) == dict(first)
    _status, results = await call(
        http, "GET", f"{system.api_url}/campaigns/{delivery['campaign_id']}/results", account.headers
    )
    assert (results["sent"], results["delivered"], results["failed"], results["undelivered"]) == (1, 1, 0, 0)


async def test_a_late_status_never_undoes_a_later_one(http, delivered, db):
    delivery, url = delivered
    for status_name in ("sent", "queued", "sending"):
        form = _form(delivery, status_name)
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
        status, _ = await _post(http, url, form, signature, token=f"late-{status_name}-{delivery['id']}")
        assert status == 200
    after = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery["id"])
    assert after["state"] == "delivered"
    assert after["provider_status"] == "delivered"
    assert after["delivered_at"] == delivery["delivered_at"]


async def test_undelivered_after_sent_is_recorded(http, system, account, db, fake_twilio):
    fake_twilio.callback_statuses = ("sent", "undelivered")
    try:
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
        _status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "one", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
             "message_template": "hi", "status": "scheduled"},
        )

        async def undelivered():
            return await db.fetchrow(
                "SELECT * FROM deliveries WHERE campaign_id = $1 AND state = 'undelivered'", body["id"]
            )

        row = await wait_until(undelivered)
    finally:
        fake_twilio.callback_statuses = ("sent", "delivered")
    assert row["sent_at"] is not None
    assert row["delivered_at"] is None
    assert "undelivered" in row["error"]
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
    assert (results["sent"], results["undelivered"]) == (1, 1), results  # a carrier failure


async def test_a_lost_delivery_receipt_is_asked_for_at_twilio(http, system, account, fake_twilio, db):
    # Given two contacts whose `delivered` callbacks never reach the tracker (a third's do)
    phones = [new_phone() for _ in range(3)]
    lost = set(phones[:2])
    for phone in lost:
        fake_twilio.lost_callbacks[phone] = {"delivered"}
    try:
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
        status, body = await call(
            http, "POST", system.api_url + "/campaigns", account.headers,
            {"name": "receipts", "agent_id": agent["id"], "type": "sms", "contacts": phones,
             "message_template": "hi", "status": "scheduled"},
        )
        assert status == 201, body

        async def all_delivered():
            rows = await db.fetch(
                "SELECT to_address, state, status_checks, provider_id, delivered_at FROM deliveries"
                " WHERE campaign_id = $1",
                body["id"],
            )
            return rows if len(rows) == 3 and all(r["state"] == "delivered" for r in rows) else None

        # Then the SMS dispatcher looks the two up (CAMPAIGNS_RECEIPT_AFTER=2 here) and applies what Twilio says
        rows = await wait_until(all_delivered, timeout=30, message="every receipt, the lost ones looked up")
    finally:
        for phone in lost:
            fake_twilio.lost_callbacks.pop(phone, None)
    by_phone = {r["to_address"]: r for r in rows}
    for phone in phones:
        row = by_phone[phone]
        path = f"/Messages/{row['provider_id']}.json"
        lookups = [r for r in fake_twilio.requests if r.method == "GET" and r.path.endswith(path)]
        if phone in lost:
            assert (row["status_checks"], len(lookups)) == (1, 1), phone  # asked once, found delivered
            assert row["delivered_at"] is not None
        else:
            assert (row["status_checks"], len(lookups)) == (0, 0), phone  # its callback came: never asked
    _status, results = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
    assert (results["sent"], results["delivered"]) == (3, 3)
