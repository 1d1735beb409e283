"""`campaigns up`: the whole system in one process, for a newcomer."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import io
import os
import sys
from collections.abc import Coroutine, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import click
import structlog

from shared.admin import balance_of, create_account
from shared.settings import SANDBOX_INBOUND_EMAIL_TOKEN, Settings, inbound_email_token, reachable_host, smtp_address

log = structlog.get_logger()

#: Seconds a stage of services has to stop once asked (a dispatcher drains for at most 30 s, then
#: waits at most 30 s for its sends under way) before it is cancelled.
STAGE_GRACE_S = 60.0


def _command() -> str:
    """How this shell runs `campaigns`: as it was started (`.venv/bin/campaigns` under ./run up)."""
    started = sys.argv[0]
    return started if os.path.basename(started) == "campaigns" else "campaigns"


async def _ready(settings: Settings, tasks: list[asyncio.Task[None]], within_s: float = 60.0) -> bool:
    """Whether the API and the tracker answer /healthz before any service fails (a port in use)."""
    urls = [
        f"http://{reachable_host(settings.api_host)}:{settings.api_port}/healthz",
        f"http://{reachable_host(settings.tracker_host)}:{settings.tracker_port}/healthz",
    ]
    deadline = asyncio.get_running_loop().time() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while asyncio.get_running_loop().time() < deadline:
            if any(t.done() for t in tasks):
                return False
            answers = []
            for url in urls:
                try:
                    async with http.get(url) as response:
                        answers.append(response.status == 200)
                except (aiohttp.ClientError, TimeoutError):
                    answers.append(False)
            if all(answers):
                # a sandbox that could not bind fails at once too: give it the same moment
                await asyncio.sleep(0.2)
                return not any(t.done() for t in tasks)
            await asyncio.sleep(0.2)
    return False


async def run(settings: Settings, stop: asyncio.Event, name: str, balance: Decimal) -> None:
    """Migrate, start every service (and the sandbox unless live), print the API and a key."""
    from services.api.app import run as api
    from services.dispatcher.app import run as dispatcher
    from services.scheduler.app import run as scheduler
    from services.tracker.app import run as tracker
    from shared.sandbox.run import run as sandbox
    from shared.sandbox.smtp import SandboxSmtp
    from shared.sandbox.smtp import run as sandbox_smtp

    # Every port first: a second `up` (or anything else on a port) ends here, having started
    # nothing (no consumer on the shared queues, no half-made pool) and made no key.
    taken = await _taken_ports(settings)
    if taken:
        raise _not_started(taken)
    # `up` again on the same database keeps the account (and its campaigns) and prints a new key
    account_id, key = await create_account(settings.database_url, name, balance, settings.default_timezone, reuse=True)
    # Stopped in this order (see _stop_in_stages): what starts sends (the dispatchers drain what
    # they hold), then the sandbox providers, then the tracker that takes their last callbacks.
    providers_stop, tracker_stop = asyncio.Event(), asyncio.Event()
    senders = [api(settings, stop), scheduler(settings, stop)]
    senders += [dispatcher(settings, channel, stop) for channel in ("sms", "email", "voice")]
    mailbox = SandboxSmtp()  # the SMTP server records into it; the sandbox's HTTP server lists it
    providers = (
        [sandbox(settings, providers_stop, mailbox), sandbox_smtp(settings, providers_stop, mailbox)]
        if settings.providers == "sandbox"
        else []
    )
    names = ["api", "scheduler", "dispatcher-sms", "dispatcher-email", "dispatcher-voice"]
    stages = [
        [_service_task(name, s) for name, s in zip(names, senders, strict=True)],
        [_service_task(name, s) for name, s in zip(["sandbox", "sandbox-smtp"], providers, strict=False)],
        [_service_task("tracker", tracker(settings, tracker_stop))],
    ]
    stopping = asyncio.create_task(_stop_in_stages(stop, stages, [providers_stop, tracker_stop]))
    try:
        await _run_until_stopped(settings, stop, [task for stage in stages for task in stage], account_id, key)
    finally:
        stop.set()
        await stopping


def _listeners(settings: Settings) -> list[tuple[str, int]]:
    """Where `up`'s services listen: the API, the tracker, the sandbox's Twilio and SMTP (unless
    live) and a metrics port when one is set (0, a free port each, needs no check)."""
    wanted = [(settings.api_host, settings.api_port), (settings.tracker_host, settings.tracker_port)]
    if settings.providers == "sandbox":
        wanted += [(settings.sandbox_host, settings.sandbox_port), (settings.sandbox_host, settings.sandbox_smtp_port)]
    wanted.append((settings.metrics_host, settings.metrics_port))
    return [(host, port) for host, port in wanted if port]


async def _taken_ports(settings: Settings) -> list[OSError]:
    """Why each port `up` needs cannot be listened on (another `campaigns up` holds it, say), tried
    as the services bind them (`loop.create_server`, as aiohttp does) and let go at once."""
    loop = asyncio.get_running_loop()
    failures: list[OSError] = []
    for host, port in _listeners(settings):
        try:
            server = await loop.create_server(asyncio.Protocol, host, port)
        except OSError as exc:
            failures.append(exc)
        else:
            server.close()
            await server.wait_closed()
    return failures


def _not_started(errors: Sequence[BaseException]) -> click.ClickException:
    """The error `up` ends with when its services cannot all start: each failure once, and, for a
    port in use, which settings choose the ports."""
    failures = list(dict.fromkeys(str(e) for e in errors)) or ["the API and the tracker did not answer in time"]
    ports_taken = any(isinstance(e, OSError) and e.errno == errno.EADDRINUSE for e in errors)
    return click.ClickException(
        "the system did not start: "
        + "; ".join(failures)
        + (
            " (another `campaigns up` running? Ports: CAMPAIGNS_API_PORT, CAMPAIGNS_TRACKER_PORT, "
            "CAMPAIGNS_SANDBOX_PORT, CAMPAIGNS_SANDBOX_SMTP_PORT)"
            if ports_taken
            else ""
        )
    )


def _service_task(service: str, run: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run one service as a task whose log lines name it (`"service": "tracker"`), as its own
    process's would, rather than `up`: whatever it starts inherits the binding."""
    context = contextvars.copy_context()
    context.run(structlog.contextvars.bind_contextvars, service=service)
    return asyncio.create_task(run, name=service, context=context)


async def _stop_in_stages(
    stop: asyncio.Event, stages: list[list[asyncio.Task[None]]], then: list[asyncio.Event]
) -> None:
    """Once `stop` is set, stop each stage of services once the stage before it has ended: a
    dispatcher that drains its deliveries still reaches the sandbox's Twilio (they would otherwise
    fail as unreachable and wait a retry interval), and the sandbox's callbacks under way still
    reach the tracker."""
    await stop.wait()
    for stage, event in zip(stages[:-1], then, strict=True):  # (the last stage's stop is the last event)
        if stage:
            await _stopped(stage)
        event.set()
    await _stopped(stages[-1])


async def _stopped(stage: list[asyncio.Task[None]]) -> None:
    """Wait for a stage's services to stop; one still running after STAGE_GRACE_S is logged with
    where it waits, then cancelled (Ctrl-C never leaves `up` hanging)."""
    _, pending = await asyncio.wait(stage, timeout=STAGE_GRACE_S)
    for task in pending:
        where = io.StringIO()
        task.print_stack(limit=20, file=where)
        log.warning("up.service_stop_slow", slow_service=task.get_name(), grace_s=STAGE_GRACE_S, stack=where.getvalue())
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def _run_until_stopped(
    settings: Settings, stop: asyncio.Event, tasks: list[asyncio.Task[None]], account_id: str, key: str
) -> None:
    """Wait for the system to answer, print how to reach it, and run until `stop` is set (or a
    service fails)."""
    if not await _ready(settings, tasks):
        interrupted = stop.is_set()  # Ctrl-C (or SIGTERM) while the services were starting
        stop.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)  # each service stopped
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if interrupted and not errors:
            return  # stopped as asked, not a failure to start
        raise _not_started(errors)
    smtp_host, smtp_port = smtp_address(settings)
    smtp_note = (
        " (the sandbox: it accepts and logs every message; read them at "
        f"http://{reachable_host(settings.sandbox_host)}:{settings.sandbox_port}/sandbox/emails)"
        if "smtp_host" not in settings.model_fields_set and settings.providers == "sandbox"
        else ""
    )
    token = inbound_email_token(settings)
    if token == SANDBOX_INBOUND_EMAIL_TOKEN:
        inbound_note = f", Authorization: Bearer {token}"
    else:  # the operator's own token is a secret: not printed
        inbound_note = ", Authorization: Bearer $CAMPAIGNS_INBOUND_EMAIL_TOKEN" if token else " (off: set the token)"
    api_url = f"http://{reachable_host(settings.api_host)}:{settings.api_port}"
    balance_now = await balance_of(settings.database_url, account_id)
    click.echo(
        f"\nCampaigns is up ({settings.providers} providers).\n"
        f"  API:       {api_url}\n"
        f"  Dashboard: {api_url}/dashboard (sign in with the API key)\n"
        f"  Webhooks:  {settings.public_url}\n"
        f"  Email:     SMTP {smtp_host}:{smtp_port or 'default port'}{smtp_note}\n"
        f"  Inbound email (bounces, replies): POST {settings.public_url}/webhooks/email/inbound"
        f"{inbound_note}\n"
        f"  Account:   {account_id}, balance {balance_now}"
        f" (to add to it: {_command()} accounts credit {account_id} AMOUNT)\n"
        f"  API key:   {key}\n\n"
        f"  export API_KEY={key}\n"
        f'  curl -H "Authorization: Bearer $API_KEY" {api_url}/campaigns\n'
        "Ctrl-C stops everything.\n",
        err=False,
    )
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            stop.set()
            log.error("up.service_failed", error=repr(task.exception()))
    await asyncio.gather(*tasks, return_exceptions=True)
