"""The guarded HTTP client (`shared/outbound.py`) against real servers on this machine: refused
addresses are never connected to (by IP or by name), allowed networks are, redirects are not
followed, answers are bounded."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web

from services.tracker import agents
from services.tracker.agents.conversation import Conversation
from shared import outbound
from shared.outbound import OutboundPolicy, OutboundRefused

LOOPBACK = OutboundPolicy((ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture
async def server():
    """A local HTTP server: /hook answers a reply, /redirect a 302 to /hook, /big 2 MB; `hits` counts requests."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"reply": "hello"})

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/hook")

    async def big(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"reply": "x" * (2 * 1024 * 1024)})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, hits
    await runner.cleanup()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_url_is_never_connected_to(server, host):
    port, hits = server
    async with outbound.session(OutboundPolicy()) as client:
        with pytest.raises(OutboundRefused, match="a loopback address"):
            await outbound.post_json(client, f"http://{host}:{port}/hook", {})
        with pytest.raises(OutboundRefused, match="a loopback address"):  # the session itself, not just the helper
            await client.post(f"http://{host}:{port}/hook", json={})
    assert hits == []


async def test_an_allowed_network_is_reached(server):
    port, hits = server
    async with outbound.session(LOOPBACK) as client:
        assert await outbound.post_json(client, f"http://localhost:{port}/hook", {}) == {"reply": "hello"}
    assert hits == ["/hook"]


async def test_redirects_are_not_followed_and_answers_are_bounded(server):
    port, hits = server
    async with outbound.session(LOOPBACK) as client:
        with pytest.raises(OutboundRefused, match="answered a redirect"):
            await outbound.post_json(client, f"http://127.0.0.1:{port}/redirect", {})
        with pytest.raises(OutboundRefused, match="answered more than 1,048,576 bytes"):
            await outbound.post_json(client, f"http://127.0.0.1:{port}/big", {})
        with pytest.raises(OutboundRefused, match="not an http"):
            await outbound.post_json(client, "file:///etc/passwd", {})
    assert hits == ["/redirect", "/big"]  # never /hook, where the redirect pointed


async def test_the_url_check_at_saving_resolves_names(server):
    port, _ = server
    with pytest.raises(OutboundRefused, match=r"localhost: 127\.0\.0\.1 is a loopback address"):
        await OutboundPolicy().check_url(f"http://localhost:{port}/hook")
    with pytest.raises(OutboundRefused, match=r"\[::1\]|::1 is a loopback address"):
        await OutboundPolicy().check_url("http://[::1]/hook")
    await LOOPBACK.check_url(f"http://localhost:{port}/hook")
    await OutboundPolicy().check_url("https://no-such-host.invalid/hook")  # cannot say now: checked when connecting


async def test_an_agent_on_a_refused_url_gives_no_answer(server):
    port, hits = server
    agent = {"id": "ag_x", "name": "Hook", "instructions": "", "mode": "webhook",
             "settings": {"url": f"http://127.0.0.1:{port}/hook"}}
    history = Conversation("camp_x", "sms", [{"direction": "in", "author": "contact", "body": "hi"}])
    async with outbound.session(OutboundPolicy()) as client:
        assert await agents.answer(client, agent, {"id": "ct_x"}, history) is None
    async with outbound.session(LOOPBACK) as client:
        assert await agents.answer(client, agent, {"id": "ct_x"}, history) == "hello"
    assert hits == ["/hook"]
