"""`campaigns up` (shared/up.py): how it ends when its services do not all start."""

from __future__ import annotations

import asyncio
import errno

import click
import pytest

from shared.settings import Settings
from shared.up import _run_until_stopped


def _settings() -> Settings:
    return Settings(api_port=1, tracker_port=1)  # (nothing is reached: the services end first)


async def test_interrupted_while_starting_it_stops_quietly():
    stop = asyncio.Event()
    services = [asyncio.create_task(stop.wait()) for _ in range(3)]
    stop.set()  # Ctrl-C before the API and the tracker answered
    await _run_until_stopped(_settings(), stop, services, "acct_x", "sk_x")  # no "did not start"
    assert all(s.done() for s in services)


async def test_a_service_that_fails_to_start_is_an_error_naming_why():
    stop = asyncio.Event()

    async def taken() -> None:
        raise OSError(errno.EADDRINUSE, "error while attempting to bind on address ('127.0.0.1', 8080)")

    services = [asyncio.create_task(taken()), asyncio.create_task(taken()), asyncio.create_task(stop.wait())]
    with pytest.raises(click.ClickException) as raised:
        await _run_until_stopped(_settings(), stop, services, "acct_x", "sk_x")
    message = raised.value.message
    assert message.count("('127.0.0.1', 8080)") == 1  # each failure once
    assert "another `campaigns up` running?" in message
    assert stop.is_set()
