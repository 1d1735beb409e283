"""Agents' outbound HTTP is safe (issue 10): on a system that allows no private network (the
default), an agent URL on loopback, a private network or a metadata address is a 422 when saved,
and one stored all the same is refused at run time: no request leaves, the reply is recorded,
and the contact gets no answer."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from shared.db.pool import connect
from tests.conftest import make_account, own_system
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guarded_system(infra, fake_twilio, tmp_path_factory):
    """A system with CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS unset, as in production."""
    with own_system(infra, fake_twilio, tmp_path_factory.mktemp("guarded"), "guarded") as (system, url):
        yield system, url


@pytest.mark.parametrize(
    ("mode", "key", "url", "reason"),
    [
        ("webhook", "url", "http://127.0.0.1:8081/hook", "127.0.0.1 is a loopback address"),
        ("webhook", "url", "http://localhost/hook", "localhost: 127.0.0.1 is a loopback address"),
        ("webhook", "url", "http://[::1]:80/hook", "::1 is a loopback address"),
        ("webhook", "url", "http://[::ffff:127.0.0.1]/hook", "is a loopback address"),
        ("webhook", "url", "http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("llm", "base_url", "http://10.0.0.7:11434/v1", "10.0.0.7 is a private address"),
        ("llm", "base_url", "https://0.0.0.0/v1", "0.0.0.0 is an unspecified address"),
    ],
)
async def test_an_agent_url_that_is_not_public_is_a_422_when_saved(http, guarded_system, mode, key, url, reason):
    system, database_url = guarded_system
    db = await connect(database_url)
    try:
        account = await make_account(db)
    finally:
        await db.close()
    settings = {key: url, "model": "m"} if mode == "llm" else {key: url}
    status, body = await call(http, "POST", system.api_url + "/agents", account.headers,
                              {"name": "A", "mode": mode, "settings": settings})
    assert status == 422, body
    detail = body["error"]["details"][0]
    assert detail["field"] == f"settings.{key}"
    assert reason in detail["reason"]
    assert "CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS" in detail["reason"]
    # the same through PATCH of an agent saved with a public URL
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers,
                               {"name": "A", "mode": mode, "settings": {**settings, key: "https://93.184.215.14/x"}})
    assert status == 201, agent
    status, body = await call(http, "PATCH", f"{system.api_url}/agents/{agent['id']}", account.headers,
                              {"settings": settings})
    assert (status, body["error"]["details"][0]["field"]) == (422, f"settings.{key}")


async def test_an_agent_stored_with_a_loopback_url_is_refused_at_run_time(http, guarded_system, fake_twilio):
    system, database_url = guarded_system
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"reply": "leaked"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    db = await connect(database_url)
    try:
        account = await make_account(db)
        phone = new_phone()
        _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Hook"})
        # stored as an agent saved before URLs were checked, or whose host since moved
        await db.execute("UPDATE agents SET mode = 'webhook', settings = $2 WHERE id = $1",
                         agent["id"], {"url": f"http://127.0.0.1:{port}/hook"})
        status, campaign = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                      {"name": "c", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                       "message_template": "hi", "status": "scheduled"})
        assert status == 201, campaign

        async def delivered():
            _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{campaign['id']}/results", account.headers)
            return r["delivered"] == 1

        await wait_until(delivered, timeout=60)
        fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
        answer = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            fake_twilio.inbound(phone, "+15005550006", "hello?"), fake_twilio.thread.loop))
        assert answer is None  # the fallback: no answer
        _s, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign['id']}/results", account.headers)
        assert results["replied"] == 1  # ingestion went on
    finally:
        await db.close()
        await runner.cleanup()
    assert hits == []
    assert "agent.refused" in system.services["tracker"].output()
