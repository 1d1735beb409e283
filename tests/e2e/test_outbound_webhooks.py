"""Signed outbound webhooks: an endpoint receives each event it subscribed to, signed, and no
other; an event answered 500 comes again; a receiver down for a while gets every event once it is
back; endpoints are the account's own and reach public addresses only."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import make_account
from tests.support import call, free_port, new_phone, wait_until

pytestmark = pytest.mark.e2e


#: How the API writes a time: UTC to the second, `Z`.
_API_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def verified(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The README's receiver check, word for word."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Receiver:
    """An HTTP server of the test's own, recording each POST; `fail_first` answers 500 that many times."""

    port: int = field(default_factory=free_port)
    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        status = 500 if len(self.answered) < self.fail_first else 200
        self.answered.append(status)
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.received]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]


@pytest.fixture
async def receiver():
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


async def _endpoint(http, system, account, url: str, events: list[str]) -> dict:
    status, body = await call(http, "POST", system.api_url + "/webhook-endpoints", account.headers,
                              {"url": url, "events": events})
    assert status == 201, body
    assert body["secret"].startswith("whsec_")
    return body


async def _campaign(http, system, account, phones) -> str:
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Wh"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "hooked", "agent_id": agent["id"], "type": "sms", "contacts": phones,
         "message_template": "Hi", "status": "scheduled"},
    )
    assert status == 201, body
    return body["id"]


async def test_an_endpoint_gets_each_subscribed_event_signed_and_no_other(http, system, account, receiver):
    endpoint = await _endpoint(http, system, account, receiver.url,
                               ["campaign.launched", "campaign.completed", "delivery.sent"])
    phones = [new_phone(), new_phone()]
    campaign_id = await _campaign(http, system, account, phones)

    async def completed_came():
        return "campaign.completed" in receiver.types()

    await wait_until(completed_came, timeout=60, message="campaign.completed delivered")
    assert sorted(receiver.types()) == ["campaign.completed", "campaign.launched", "delivery.sent", "delivery.sent"]
    for headers, body in receiver.received:
        assert verified(endpoint["secret"], headers["Campaigns-Signature"], body)
        assert not verified("whsec_another", headers["Campaigns-Signature"], body)
    events = receiver.events()
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["id"].startswith("evt_") and e["created_at"].endswith("Z") for e in events)
    sent = [e["data"] for e in events if e["type"] == "delivery.sent"]
    assert sorted(d["to"] for d in sent) == sorted(phones)
    assert {d["campaign_id"] for d in sent} == {campaign_id}
    done = next(e for e in events if e["type"] == "campaign.completed")
    assert (done["data"]["campaign_id"], done["data"]["status"]) == (campaign_id, "completed")
    # the attempts list says what each got
    status, attempts = await call(
        http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}/attempts", account.headers
    )
    assert status == 200, attempts
    assert sorted(a["event"] for a in attempts["data"]) == sorted(receiver.types())
    assert {a["status_code"] for a in attempts["data"]} == {200}
    assert all(_API_TIME.fullmatch(a["at"]) for a in attempts["data"]), attempts


async def test_an_event_answered_500_comes_again(http, system, account, receiver):
    receiver.fail_first = 1
    endpoint = await _endpoint(http, system, account, receiver.url, ["campaign.launched"])
    await _campaign(http, system, account, [new_phone()])

    async def twice():
        return len(receiver.received) >= 2

    await wait_until(twice, timeout=30, message="the event sent again")
    first, second = receiver.events()[:2]
    assert first == second  # the same event (same id): receivers dedupe on it
    assert receiver.answered[:2] == [500, 200]
    _status, attempts = await call(
        http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}/attempts", account.headers
    )
    assert [(a["status_code"], a["error"]) for a in attempts["data"]][:2] == [(200, None), (500, "answered 500")]


async def test_a_receiver_down_for_a_while_gets_every_event_afterwards(http, system, account):
    down = Receiver()  # not listening yet: connections are refused
    endpoint = await _endpoint(http, system, account, down.url, ["*"])
    phones = [new_phone(), new_phone(), new_phone()]
    campaign_id = await _campaign(http, system, account, phones)

    async def refused_a_few():
        _status, attempts = await call(
            http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}/attempts", account.headers
        )
        return len(attempts["data"]) >= 3 and all(a["status_code"] is None for a in attempts["data"])

    await wait_until(refused_a_few, timeout=30, message="attempts refused while the receiver is down")

    async def completed():
        _status, body = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
        return body["status"] == "completed"

    await wait_until(completed, timeout=60, message="campaign completed")
    await down.start()
    try:
        wanted = {"campaign.launched": 1, "delivery.sent": 3, "delivery.delivered": 3, "campaign.completed": 1}

        async def all_came():
            got = receiver_counts(down)
            return got if all(got.get(k, 0) >= n for k, n in wanted.items()) else None

        got = await wait_until(all_came, timeout=60, message="every event after the receiver came back")
        assert set(got) == set(wanted), got
        _status, fetched = await call(
            http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}", account.headers
        )
        assert fetched["enabled"] is True
    finally:
        await down.stop()


def receiver_counts(receiver: Receiver) -> dict[str, int]:
    """Events received, by type, each event counted once (a retry is the same id)."""
    unique = {e["id"]: e["type"] for e in receiver.events()}
    counts: dict[str, int] = {}
    for kind in unique.values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


async def test_endpoints_are_checked_and_the_accounts_own(http, system, account, db):
    url = system.api_url + "/webhook-endpoints"
    status, body = await call(http, "POST", url, account.headers,
                              {"url": "http://10.1.2.3/hook", "events": ["campaign.paused", "campaign.pasued"]})
    assert status == 422, body
    reasons = {d["field"]: d["reason"] for d in body["error"]["details"]}
    assert "not reachable from here" in reasons["url"], reasons
    assert "private" in reasons["url"], reasons
    assert "campaign.pasued" in str(body["error"]["details"])
    status, body = await call(http, "POST", url, account.headers, {"url": "ftp://example.com/x", "events": ["*"]})
    assert status == 422, body
    assert body["error"]["details"] == [{"field": "url", "reason": "must be an http(s) URL"}]

    created = await _endpoint(http, system, account, "http://127.0.0.1:9/hook", ["reply.received"])
    status, fetched = await call(http, "GET", f"{url}/{created['id']}", account.headers)
    assert status == 200, fetched
    assert "secret" not in fetched
    status, changed = await call(http, "PATCH", f"{url}/{created['id']}", account.headers,
                                 {"events": ["*"], "enabled": False})
    assert (status, changed["events"], changed["enabled"]) == (200, ["*"], False), changed
    # its times as the rest of the API writes them (seconds, Z), failing_since too
    await db.execute("UPDATE webhook_endpoints SET failing_since = now() WHERE id = $1", created["id"])
    status, fetched = await call(http, "GET", f"{url}/{created['id']}", account.headers)
    for body in (created, changed, fetched):
        assert _API_TIME.fullmatch(body["created_at"]), body
        assert _API_TIME.fullmatch(body["updated_at"]), body
    assert _API_TIME.fullmatch(fetched["failing_since"]), fetched
    assert created["failing_since"] is None
    status, listed = await call(http, "GET", url, account.headers)
    assert [e["id"] for e in listed["data"]] == [created["id"]]

    other = await make_account(db)
    for method in ("GET", "PATCH", "DELETE"):
        status, _body = await call(http, method, f"{url}/{created['id']}", other.headers,
                                   {"enabled": True} if method == "PATCH" else None)
        assert status == 404, method
    status, _body = await call(http, "GET", f"{url}/{created['id']}/attempts", other.headers)
    assert status == 404
    status, _body = await call(http, "DELETE", f"{url}/{created['id']}", account.headers)
    assert status == 204
    status, _body = await call(http, "GET", f"{url}/{created['id']}", account.headers)
    assert status == 404


async def test_automatic_pauses_and_failures_carry_their_reason(http, system, account, receiver, fake_twilio):
    await _endpoint(http, system, account, receiver.url, ["campaign.paused", "campaign.failed"])
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Wh"})
    tripped, failing = [new_phone() for _ in range(10)], [new_phone(), new_phone()]
    for phone in tripped + failing:
        fake_twilio.script[phone] = [(400, 21211)]  # not a valid number: fails for good
    fake_twilio.response_delay = 0.1  # the breaker's campaign is still running when it looks
    try:
        for phones, extra in ((tripped, {"circuit_breaker": {"min_sends": 2}, "max_concurrent": 1}),
                              (failing, {"circuit_breaker": False})):
            status, body = await call(
                http, "POST", system.api_url + "/campaigns", account.headers,
                {"name": "bad list", "agent_id": agent["id"], "type": "sms", "contacts": phones,
                 "message_template": "Hi", "status": "scheduled", **extra},
            )
            assert status == 201, body

        async def both_came():
            types = receiver.types()
            return "campaign.paused" in types and "campaign.failed" in types

        await wait_until(both_came, timeout=60, message="campaign.paused and campaign.failed")
    finally:
        fake_twilio.response_delay = 0.0
    events = {e["type"]: e["data"] for e in receiver.events()}
    assert events["campaign.paused"]["reason"]["code"] == "failure_rate", events
    assert events["campaign.paused"]["previous_status"] == "running"
    assert events["campaign.failed"]["reason"].startswith("run 1: no delivery succeeded (2 failed"), events


async def test_an_endpoint_failing_too_long_is_disabled_saying_for_how_long(http, system, account, receiver, db):
    # Given an endpoint that answers 500 and has failed without a success for 4 days (the tracker's
    # CAMPAIGNS_WEBHOOK_DISABLE_AFTER is the default, 3 days)
    receiver.fail_first = 1000
    endpoint = await _endpoint(http, system, account, receiver.url, ["campaign.launched"])
    await db.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '4 days' WHERE id = $1",
                     endpoint["id"])
    await _campaign(http, system, account, [new_phone()])

    async def disabled():
        _status, body = await call(http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}",
                                   account.headers)
        return body if not body["enabled"] else None

    body = await wait_until(disabled, timeout=30, message="the endpoint disabled")
    assert body["disabled_reason"] == "disabled after failing for 3 days: answered 500", body
