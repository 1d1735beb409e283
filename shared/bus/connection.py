"""A robust connection and a confirming channel, as an async context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import AMQPError

from shared.bus import topology
from shared.errors import Unreachable


@asynccontextmanager
async def connect(url: str, prefix: str = "") -> AsyncIterator[AbstractRobustConnection]:
    """Connect (reconnecting after failures), declare the topology, close on exit."""
    try:
        connection = await aio_pika.connect_robust(url, client_properties={"connection_name": "campaigns"})
    except (OSError, AMQPError) as exc:  # nothing listening, no such host, the login refused
        raise Unreachable("RabbitMQ", url, "CAMPAIGNS_AMQP_URL", exc) from exc
    try:
        async with connection.channel() as channel:
            await topology.declare(channel, prefix)
        yield connection
    finally:
        await connection.close()
