"""Templates have a budget (issue 10): a template bomb is a 422 where it can be found before any
contact is rendered, a refused preview or dry run within a second while the API keeps answering,
and a failed delivery with the reason at send time."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e

#: Billions of steps whatever the contact.
BOMB = '{% set s = "x" * 60000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}Hi'
#: Billions of steps for a contact whose `s` is long: found only when rendering for them.
DATA_BOMB = (
    "{% for a in s|default('') %}{% for b in s|default('') %}{% endfor %}{% endfor %}"
    "Hi {{ first_name|default('there') }}"
)
#: Slow steps: runs its whole time budget for a contact with many items and a long text.
SLOW = "{% for a in items %}{{ text|wordcount }}{% endfor %}"


def _reason(body: dict, field: str) -> str:
    return next(d["reason"] for d in body["error"]["details"] if d["field"] == field)


async def test_a_bomb_is_a_422_wherever_a_template_is_written(http, system, account):
    api = system.api_url
    _status, agent = await call(http, "POST", api + "/agents", account.headers, {"name": "A"})
    cases = [
        ("POST", "/templates", {"name": "t", "channel": "sms", "body": BOMB}, "body"),
        ("POST", "/templates", {"name": "t", "channel": "email", "subject": BOMB, "body": "x"}, "subject"),
        ("POST", "/templates", {"name": "t", "channel": "email", "subject": "s", "html": BOMB}, "html"),
        ("POST", "/campaigns", {"name": "c", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                                "message_template": BOMB}, "message_template"),
        ("POST", "/campaigns", {"name": "c", "agent_id": agent["id"], "type": "email", "contacts": ["a@example.com"],
                                "message_template": "x", "subject": "s", "html_template": BOMB}, "html_template"),
        ("POST", "/campaigns", {"name": "c", "agent_id": agent["id"], "type": "voice", "contacts": [new_phone()],
                                "opening_message": BOMB}, "opening_message"),
        ("POST", "/agents", {"name": "A", "opening_message": BOMB}, "opening_message"),
    ]
    for method, path, body, field in cases:
        started = time.monotonic()
        status, answer = await call(http, method, api + path, account.headers, body)
        assert (status, path) == (422, path), answer
        assert "too much work" in _reason(answer, field)
        assert time.monotonic() - started < 1.0
    # and when a stored one is changed into one
    status, template = await call(http, "POST", api + "/templates", account.headers,
                                  {"name": "t", "channel": "sms", "body": "Hi"})
    assert status == 201
    status, answer = await call(http, "PATCH", f"{api}/templates/{template['id']}", account.headers, {"body": BOMB})
    assert status == 422
    assert "too much work" in _reason(answer, "body")
    status, draft = await call(http, "POST", api + "/campaigns", account.headers,
                               {"name": "c", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone()],
                                "message_template": "Hi"})
    status, answer = await call(http, "PATCH", f"{api}/campaigns/{draft['id']}", account.headers,
                                {"message_template": BOMB})
    assert status == 422
    assert "too much work" in _reason(answer, "message_template")
    status, answer = await call(http, "PATCH", f"{api}/agents/{agent['id']}", account.headers,
                                {"opening_message": BOMB})
    assert status == 422
    assert "too much work" in _reason(answer, "opening_message")


async def _latencies_meanwhile(http, url: str, request) -> tuple[float, list[float], object]:
    """Run `request` while GET /healthz is asked again and again: (its time, each GET's time, its result)."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def ask_again() -> None:
        while not done.is_set():
            started = time.monotonic()
            async with http.get(url + "/healthz") as response:
                assert response.status == 200
            latencies.append(time.monotonic() - started)

    pinger = asyncio.create_task(ask_again())
    started = time.monotonic()
    try:
        result = await request()
    finally:
        elapsed = time.monotonic() - started
        done.set()
        await pinger
    return elapsed, latencies, result


async def test_a_preview_that_blows_the_budget_is_refused_within_a_second_and_the_api_answers_meanwhile(
    http, system, account
):
    api = system.api_url
    status, data_bomb = await call(http, "POST", api + "/templates", account.headers,
                                   {"name": "data bomb", "channel": "sms", "body": DATA_BOMB})
    assert status == 201, data_bomb  # nothing to find without the contact's data
    status, slow = await call(http, "POST", api + "/templates", account.headers,
                              {"name": "slow", "channel": "sms", "body": SLOW})
    assert status == 201, slow

    elapsed, _, (status, answer) = await _latencies_meanwhile(http, api, lambda: call(
        http, "POST", f"{api}/templates/{data_bomb['id']}/preview", account.headers, {"contact": {"s": "x" * 60000}}))
    assert status == 422
    assert "too much work" in _reason(answer, "body")
    assert elapsed < 1.0

    # the slow one renders for its whole time budget (0.5 s): off the event loop, so GETs still answer
    elapsed, latencies, (status, answer) = await _latencies_meanwhile(http, api, lambda: call(
        http, "POST", f"{api}/templates/{slow['id']}/preview", account.headers,
        {"contact": {"items": list(range(5000)), "text": "ab " * 20000}}))
    assert status == 422
    assert "takes too long to render" in _reason(answer, "body")
    assert 0.5 <= elapsed < 1.5
    assert len(latencies) >= 3, latencies
    assert max(latencies) < 0.3, latencies  # a loop held by the render would have kept one waiting ≥ 0.5 s

    status, answer = await call(http, "POST", f"{api}/templates/{data_bomb['id']}/preview", account.headers,
                                {"contact": {"s": "short", "first_name": "Ann"}})
    assert (status, answer["body"]) == (200, "Hi Ann")


async def test_a_dry_run_shows_the_budget_error_and_the_send_fails_with_it(http, system, account, fake_twilio):
    api = system.api_url
    _status, agent = await call(http, "POST", api + "/agents", account.headers, {"name": "A"})
    bomb_phone, plain_phone = new_phone(), new_phone()
    status, campaign = await call(http, "POST", api + "/campaigns", account.headers, {
        "name": "data bomb", "agent_id": agent["id"], "type": "sms", "message_template": DATA_BOMB,
        "contacts": [{"phone": bomb_phone, "s": "x" * 60000}, {"phone": plain_phone, "first_name": "Ann"}]})
    assert status == 201, campaign

    elapsed, _latencies, (status, dry) = await _latencies_meanwhile(http, api, lambda: call(
        http, "POST", f"{api}/campaigns/{campaign['id']}/dry-run", account.headers))
    assert status == 200, dry
    assert elapsed < 1.0
    errors = {s["to"]: s["error"] for s in dry["samples"]}
    assert "too much work" in errors[bomb_phone]
    assert errors[plain_phone] is None

    status, _ = await call(http, "POST", f"{api}/campaigns/{campaign['id']}/launch", account.headers)
    assert status == 200

    async def finished():
        _status, page = await call(http, "GET", f"{api}/campaigns/{campaign['id']}/deliveries", account.headers)
        states = {d["to"]: (d["state"], d["error"]) for d in page["data"]}
        return states if all(s[0] not in ("planned", "queued", "sending") for s in states.values()) else None

    states = await wait_until(finished, timeout=60)
    assert states[bomb_phone][0] == "failed"
    assert "template error: the template does too much work" in states[bomb_phone][1]
    assert states[plain_phone][0] in ("sent", "delivered")
    assert fake_twilio.sent_to(bomb_phone) == []
    assert [m.get("Body") for m in fake_twilio.sent_to(plain_phone)] == ["Hi Ann"]
