"""Test helpers: waiting on conditions, servers in threads, free ports, service processes."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


async def wait_until(
    condition: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}; last value: {last!r}")


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port 0 and for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Ports `free_port` has handed out in this process (each once: its owner may not have bound it yet).
_HANDED: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range: a service that binds
    port 0 (its metrics) or connects out is never given it before the process it is meant for binds
    it (which once let a dispatcher's health server answer at the API's address)."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12_000), low)
        if port in _HANDED:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


class LoopThread:
    """An event loop in a background thread, for servers that outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        """Run `coro` on the thread's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the loop and the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Service:
    """One `campaigns <command>` process with its own environment; its output goes to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the process."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *self.args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait for a graceful exit; its exit code."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode if self.process else None

    def alive(self) -> bool:
        """Whether the process is still running."""
        return bool(self.process and self.process.poll() is None)

    def output(self) -> str:
        """What the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class AgentEndpoint:
    """An agent's endpoint on this machine, on the test's own loop: `/agent` plays a `webhook`
    agent (answers `{"reply": answer}`), `/v1/chat/completions` an OpenAI-compatible `llm` one
    (answers `answer` as the first choice). Each request's JSON body is kept in `seen`, in order."""

    def __init__(self, answer: str = "Sure.") -> None:
        self.answer = answer
        self.seen: list[dict[str, Any]] = []
        self._runner: Any = None
        self.port = 0

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/agent"

    @property
    def llm_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        from aiohttp import web

        async def webhook(request: web.Request) -> web.Response:
            self.seen.append(await request.json())
            return web.json_response({"reply": self.answer})

        async def completions(request: web.Request) -> web.Response:
            self.seen.append(await request.json())
            return web.json_response({"choices": [{"message": {"role": "assistant", "content": self.answer}}]})

        app = web.Application()
        app.router.add_post("/agent", webhook)
        app.router.add_post("/v1/chat/completions", completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


_numbers = iter(range(int(time.time() * 1000) % 9_000_000, 10**9))


def new_phone() -> str:
    """A US number (possible, per phonenumbers) no other test of this run uses."""
    return f"+1415{next(_numbers) % 10_000_000:07d}"


async def call(
    http: Any, method: str, url: str, headers: dict[str, str] | None = None, json: Any = None
) -> tuple[int, Any]:
    """One JSON request: (status, parsed body)."""
    async with http.request(method, url, headers=headers, json=json) as response:
        body = await response.json(content_type=None) if response.content_length != 0 else None
        return response.status, body


async def results_when(
    http: Any, api_url: str, headers: dict[str, str], campaign_id: str, ready: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    """The campaign's results once `ready(results)` holds (waited for, with a deadline)."""

    async def look() -> dict[str, Any] | None:
        _status, results = await call(http, "GET", f"{api_url}/campaigns/{campaign_id}/results", headers)
        return results if ready(results) else None

    found: dict[str, Any] = await wait_until(look, timeout=timeout, message=f"results of {campaign_id}")
    return found


async def campaign_through_cuts(
    http: Any,
    api_url: str,
    headers: dict[str, str],
    fake_twilio: Any,
    cut: Callable[[], Awaitable[int]],
    contacts: int = 300,
) -> tuple[str, list[str], list[int]]:
    """Run an SMS campaign to `contacts` new phones, calling `cut` (a fault) once 60 and once 150
    of them have been sent to, and wait until it completes; (campaign id, phones, what each cut
    returned). Each phone got exactly one message, or this fails."""
    phones = [new_phone() for _ in range(contacts)]
    fake_twilio.response_delay = 0.02  # slow enough that the cuts land mid-campaign
    try:
        _status, agent = await call(http, "POST", api_url + "/agents", headers, {"name": "A"})
        status, body = await call(
            http, "POST", api_url + "/campaigns", headers,
            {"name": "faults", "agent_id": agent["id"], "type": "sms", "contacts": phones,
             "message_template": "hi", "max_concurrent": 20, "status": "scheduled"},
        )
        assert status == 201, body

        async def reached(n: int) -> bool:
            return sum(1 for p in phones if fake_twilio.sent_to(p)) >= n

        cuts = []
        for mark in (60, 150):
            await wait_until(lambda mark=mark: reached(mark), timeout=60, message=f"{mark} sent")
            cuts.append(await cut())

        async def completed() -> bool:
            # a request may meet a connection the fault just broke (a 503): ask again
            status, results = await call(http, "GET", f"{api_url}/campaigns/{body['id']}/results", headers)
            return status == 200 and bool(results["status"] == "completed")

        await wait_until(completed, timeout=120, message="campaign completed after the cuts")
    finally:
        fake_twilio.response_delay = 0.0
    counts = [len(fake_twilio.sent_to(p)) for p in phones]
    assert {c: counts.count(c) for c in set(counts)} == {1: contacts}  # each contact exactly once
    return body["id"], phones, cuts


class TcpProxy:
    """A TCP relay to (host, port) on a thread of its own: services connect to `port`; `cut()`
    drops every connection open through it at that moment (new ones are let through), which to
    a client looks like the server going away."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._loop = LoopThread()
        self._open: set[asyncio.StreamWriter] = set()
        self._server = self._loop.run(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                self._open.discard(dst)
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def open_connections(self) -> int:
        """How many client connections are open through the relay now."""
        return len(self._open) // 2

    def cut(self) -> int:
        """Drop every open connection (both ends, at once); how many client connections it dropped."""

        async def drop() -> int:
            writers = list(self._open)
            for writer in writers:
                writer.transport.abort()
            self._open.clear()
            return len(writers) // 2

        return self._loop.run(drop())

    def close(self) -> None:
        """Stop relaying: open connections dropped, new ones refused (a second call does nothing)."""
        if self._loop.loop.is_closed():
            return

        async def stop() -> None:
            self._server.close()
            for writer in list(self._open):
                writer.transport.abort()

        self._loop.run(stop())
        self._loop.close()


async def verified_email_sender(http: Any, api_url: str, headers: dict[str, str], smtp: Any, address: str) -> None:
    """Add `address` as an email sender and open the link mailed to it, as its owner would."""
    status, sender = await call(http, "POST", api_url + "/senders", headers, {"email": address})
    assert status in (200, 201), sender
    mail = smtp.sent_to(address)[-1]
    link = verification_link(mail.part("plain") or "")
    async with http.post(link) as response:
        assert response.status == 200, await response.text()


def verification_link(text: str) -> str:
    """The sender-verification link in a mail's text."""
    import re

    found = re.search(r"https?://\S+/senders/verify/\S+", text)
    assert found, text
    return found.group(0)


async def signed_in(system: Any, key: str) -> Any:
    """A browser's session on the dashboard, signed in with the API key `key` (the caller closes it)."""
    import aiohttp

    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(system.api_url + "/dashboard/login") as page:
        found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert found, "no form on the login page"
    form = {"api_key": key, "csrf_token": found[1]}
    async with session.post(system.api_url + "/dashboard/login", data=form) as response:
        assert response.status == 200  # followed the 303 to the campaigns page
        assert "Campaigns" in await response.text()
    return session


async def dashboard_page(system: Any, key: str, path: str) -> str:
    """A dashboard page (`path`, from /dashboard) as a browser signed in with `key` sees it."""
    session = await signed_in(system, key)
    try:
        async with session.get(f"{system.api_url}/dashboard{path}") as response:
            assert response.status == 200, path
            return str(await response.text())
    finally:
        await session.close()
