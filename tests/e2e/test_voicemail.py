"""Answering machine detection end to end: API → scheduler → a voice dispatcher → fake Twilio, which
answers with a person, a machine or a fax (per number) and fetches the tracker's TwiML with
`AnsweredBy` as Twilio's synchronous AMD does → tracker (the message left, `answered_by`)."""

from __future__ import annotations

import asyncio

import pytest
from twilio.request_validator import RequestValidator

from services.tracker.voice import GOODBYE
from tests.conftest import TWILIO_TOKEN
from tests.support import Service, call, new_phone, signed_in, wait_until

pytestmark = pytest.mark.e2e

RULES = {"rules": [{"keyword": "works", "reply": "Great, see you then!"}], "default_reply": None}
OPENING = "Hi {{first_name}}, this is {{agent_name}}."
VOICEMAIL = "Sorry we missed you, {{first_name}}. {{agent_name}} will call again tomorrow."


@pytest.fixture(scope="module")
def voice_dispatcher(system, tmp_path_factory):
    """A voice dispatcher beside the session's services."""
    logs = tmp_path_factory.mktemp("voicemail")
    env = {**system.env, "CAMPAIGNS_DB_POOL_MAX": "4", "CAMPAIGNS_DISPATCH_PREFETCH": "4"}
    service = Service("voice-amd", ["dispatcher", "--channel", "voice"], env, logs)
    service.start()

    async def started() -> bool:
        return service.alive() and "dispatcher.started" in service.output()

    try:
        asyncio.run(wait_until(started, timeout=60, message="voice dispatcher started"))
        yield service
    finally:
        service.stop()


@pytest.fixture
def calls(fake_twilio, voice_dispatcher):
    return fake_twilio


async def _agent(http, system, account) -> str:
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "Riley", "mode": "rules", "settings": RULES})
    assert status == 201, agent
    return agent["id"]


async def _run(http, system, account, body: dict) -> tuple[str, dict]:
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                 {"type": "voice", "status": "scheduled", **body})
    assert status == 201, created

    async def done() -> dict | None:
        _, results = await call(http, "GET", f"{system.api_url}/campaigns/{created['id']}/results", account.headers)
        return results if results["status"] == "completed" else None

    return created["id"], await wait_until(done, timeout=90, message="voice campaign completed")


async def _deliveries(http, system, account, campaign_id: str) -> dict[str, dict]:
    status, page = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}/deliveries", account.headers)
    assert status == 200, page
    return {d["to"]: d for d in page["data"]}


def _create_request(calls, phone: str):
    return next(r for r in calls.requests if r.path.endswith("/Calls.json") and r.get("To") == phone)


async def test_a_machine_is_left_the_rendered_voicemail_and_a_person_gets_the_conversation(
    http, system, account, calls, db
):
    # Given a voicemail campaign calling one number a machine answers and one a person answers
    agent_id = await _agent(http, system, account)
    machine, person = new_phone(), new_phone()
    calls.answered_by[machine] = "machine"
    campaign_id, final = await _run(http, system, account, {
        "name": "Voicemail", "agent_id": agent_id, "message_template": OPENING,
        "contacts": [{"phone": machine, "first_name": "Ada"}, {"phone": person, "first_name": "Bo"}],
        "machine_detection": "voicemail", "voicemail_message": VOICEMAIL,
    })

    # Then both calls asked Twilio to detect machines and wait for the end of the greeting
    for phone in (machine, person):
        assert _create_request(calls, phone).get("MachineDetection") == "DetectMessageEnd"
    # the machine recorded the message rendered for its contact, and nothing else was said to it
    (left,) = calls.calls_to(machine)
    expected = "Sorry we missed you, Ada. Riley will call again tomorrow."
    assert (left["answered_by"], left["said"], left["voicemail"], left["heard"]) == (
        "machine_end_beep", [expected], expected, [])
    assert (left["status"], left["webhook_errors"]) == ("completed", [])
    # the person heard the opening, spoke, and the agent answered (the normal flow)
    (talked,) = calls.calls_to(person)
    assert talked["answered_by"] == "human"
    assert talked["said"] == ["Hi Bo, this is Riley.", "Great, see you then!", GOODBYE]
    assert talked["voicemail"] is None

    # the deliveries show who answered; the voicemail is no reply: only the person replied
    deliveries = await _deliveries(http, system, account, campaign_id)
    assert deliveries[machine]["answered_by"] == "machine_end_beep"
    assert deliveries[person]["answered_by"] == "human"
    assert deliveries[machine]["replied_at"] is None
    assert deliveries[person]["replied_at"] is not None
    assert (final["delivered"], final["replied"], final["reply_rate"]) == (2, 1, "50.0%")
    rows = await db.fetch(
        "SELECT direction, author, body FROM messages WHERE delivery_id = $1 ORDER BY created_at, id",
        deliveries[machine]["id"])
    assert [(r["direction"], r["author"], r["body"]) for r in rows] == [("out", "system", expected)]

    # A repeated answer webhook for the person's finished call (same CallSid, a new idempotency token)
    # saying a machine answered changes nothing: the first answer wins, and no voicemail is left
    before = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", deliveries[person]["id"])
    conversation = "SELECT direction, author, body FROM messages WHERE delivery_id = $1 ORDER BY created_at, id"
    talk = await db.fetch(conversation, before["id"])
    url = f"{system.tracker_url}/webhooks/twilio/voice/answer?delivery_id={before['id']}"
    form = {"CallSid": before["provider_id"], "AnsweredBy": "machine_end_beep", "To": person}
    headers = {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, form),
               "I-Twilio-Idempotency-Token": "repeat-" + before["id"]}
    async with http.post(url, data=form, headers=headers) as response:
        assert response.status == 200
        answer = await response.text()
    assert "<Response>" in answer, answer
    assert "Sorry we missed you" not in answer, answer
    after = await db.fetchrow("SELECT * FROM deliveries WHERE id = $1", before["id"])
    assert (after["answered_by"], after["state"], after["updated_at"]) == ("human", "delivered", before["updated_at"])
    assert after["replied_at"] == before["replied_at"] is not None
    assert await db.fetch(conversation, before["id"]) == talk  # no voicemail, no opening said again

    # and the dashboard's deliveries say who answered
    session = await signed_in(system, account.key)
    async with session, session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}") as response:
        page = await response.text()
    assert "answered by machine end beep" in page
    assert "answered by human" in page


async def test_hangup_hangs_up_on_a_machine_at_once(http, system, account, calls, db):
    # Given a campaign that hangs up on machines, calling a machine, a fax and a person
    agent_id = await _agent(http, system, account)
    machine, fax, person = new_phone(), new_phone(), new_phone()
    calls.answered_by[machine] = "machine"
    calls.answered_by[fax] = "fax"
    campaign_id, final = await _run(http, system, account, {
        "name": "No machines", "agent_id": agent_id, "message_template": "Hello from {{agent_name}}",
        "contacts": [machine, fax, person], "machine_detection": "hangup", "max_concurrent": 3,
    })

    # Then the calls asked for the quickest detection, and the machine and fax heard nothing
    for phone in (machine, fax, person):
        assert _create_request(calls, phone).get("MachineDetection") == "Enable"
    assert [(c["answered_by"], c["said"], c["voicemail"]) for c in calls.calls_to(machine)] == [
        ("machine_start", [], None)]
    assert [(c["answered_by"], c["said"]) for c in calls.calls_to(fax)] == [("fax", [])]
    assert calls.calls_to(person)[0]["said"] == ["Hello from Riley", "Great, see you then!", GOODBYE]
    deliveries = await _deliveries(http, system, account, campaign_id)
    assert {p: deliveries[p]["answered_by"] for p in (machine, fax, person)} == {
        machine: "machine_start", fax: "fax", person: "human"}
    assert (final["delivered"], final["replied"]) == (3, 1)
    said = await db.fetchval(
        "SELECT count(*) FROM messages WHERE delivery_id = ANY($1::text[])",
        [deliveries[machine]["id"], deliveries[fax]["id"]])
    assert said == 0


async def test_without_machine_detection_twilio_is_not_asked(http, system, account, calls, db):
    agent_id = await _agent(http, system, account)
    phone = new_phone()
    calls.answered_by[phone] = "machine"  # would be a machine, were detection asked for
    campaign_id, final = await _run(http, system, account, {
        "name": "Plain call", "agent_id": agent_id, "message_template": "Hi", "contacts": [phone],
    })
    assert _create_request(calls, phone).get("MachineDetection") is None
    assert calls.calls_to(phone)[0]["said"][0] == "Hi"
    delivery = (await _deliveries(http, system, account, campaign_id))[phone]
    assert delivery["answered_by"] is None
    assert final["delivered"] == 1

    # A repeated answer webhook (same CallSid, a new idempotency token) does not record the opening
    # a second time, though no `answered_by` was recorded to tell it by
    conversation = "SELECT direction, author, body FROM messages WHERE delivery_id = $1 ORDER BY created_at, id"
    talk = await db.fetch(conversation, delivery["id"])
    assert (talk[0]["direction"], talk[0]["author"], talk[0]["body"]) == ("out", "agent", "Hi")
    sid = await db.fetchval("SELECT provider_id FROM deliveries WHERE id = $1", delivery["id"])
    url = f"{system.tracker_url}/webhooks/twilio/voice/answer?delivery_id={delivery['id']}"
    form = {"CallSid": sid, "To": phone}
    headers = {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, form),
               "I-Twilio-Idempotency-Token": "repeat-" + delivery["id"]}
    async with http.post(url, data=form, headers=headers) as response:
        assert response.status == 200
    assert await db.fetch(conversation, delivery["id"]) == talk


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"machine_detection": "voicemail"}, "voicemail_message", "required when machine_detection is 'voicemail'"),
    ({"machine_detection": "voicemail", "voicemail_message": "  "}, "voicemail_message", "required"),
    ({"machine_detection": "beep"}, "machine_detection", "must be one of off, hangup, voicemail"),
    ({"voice": {"machine_detection": "beep"}}, "machine_detection", "must be one of off, hangup, voicemail"),
    ({"machine_detection": "voicemail", "voicemail_message": "Hi {{ first_name"}, "voicemail_message", ""),
    ({"voicemail_message": 12}, "voicemail_message", ""),
    ({"type": "sms", "machine_detection": "hangup"}, "machine_detection", "only a voice campaign"),
    ({"type": "sms", "voicemail_message": "Hi"}, "voicemail_message", "only a voice campaign"),
])
async def test_invalid_machine_detection_is_a_422_naming_the_field(http, system, account, body, field, reason, db):
    before = await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id)
    status, answer = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Bad", "agent_id": "agent_none", "type": "voice", "message_template": "Hi",
        "contacts": [new_phone()], **body,
    })
    assert status == 422, answer
    details = answer["error"]["details"]
    assert any(d["field"] == field and reason in d["reason"] for d in details), details
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == before


async def test_machine_detection_is_kept_and_can_be_patched_on_a_draft(http, system, account):
    agent_id = await _agent(http, system, account)
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Draft", "agent_id": agent_id, "type": "voice", "contacts": [new_phone()],
        "message_template": "Hi", "machine_detection": "hangup",
    })
    assert status == 201, draft
    assert draft["voice"]["machine_detection"] == "hangup"
    url = f"{system.api_url}/campaigns/{draft['id']}"
    status, answer = await call(http, "PATCH", url, account.headers, {"machine_detection": "voicemail"})
    assert status == 422, answer
    assert answer["error"]["details"][0]["field"] == "voicemail_message"
    status, patched = await call(http, "PATCH", url, account.headers,
                                 {"machine_detection": "voicemail", "voicemail_message": "Call us back"})
    assert status == 200, patched
    assert (patched["voice"]["machine_detection"], patched["voice"]["voicemail_message"]) == (
        "voicemail", "Call us back")


async def test_the_openapi_document_describes_the_fields(http, system):
    status, document = await call(http, "GET", system.api_url + "/openapi.json")
    assert status == 200
    properties = document["components"]["schemas"]["CampaignCreate"]["properties"]
    modes = properties["machine_detection"]
    assert {"off", "hangup", "voicemail"} <= set(next(o for o in modes["anyOf"] if "enum" in o)["enum"])
    assert "answering machine" in modes["description"]
    assert "voicemail" in properties["voicemail_message"]["description"]
