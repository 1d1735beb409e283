"""asyncpg pool with JSON codecs (bytes are JSON text already, sent as they are)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import structlog

from shared.errors import Unreachable

log = structlog.get_logger()

#: What a value PostgreSQL cannot hold in text raises (a NUL character, in a path or query value).
UNSTORABLE: tuple[type[Exception], ...] = (
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
)

#: Seconds a closing pool waits for its connections to be given back before dropping them.
CLOSE_TIMEOUT_S = 15.0

#: What a request meets when PostgreSQL is away or has just dropped its connection (a restart, a
#: failover, `pg_terminate_backend`): the pool reconnects, and the same request tried again succeeds.
#: (asyncpg's InterfaceError and InternalClientError are what a connection cut mid-operation leaves.)
UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionRefusedError,
)


#: What connecting meets when the database is not there to be reached: nothing listening, no such
#: host, a refusal of the login or of the database name, a server starting or shutting down.
_UNREACHABLE: tuple[type[Exception], ...] = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@contextmanager
def reaching(dsn: str) -> Iterator[None]:
    """Connecting to the database `dsn`: failing to reach it raises Unreachable, which names it
    (never its password) and CAMPAIGNS_DATABASE_URL."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise Unreachable("PostgreSQL", dsn, "CAMPAIGNS_DATABASE_URL", exc) from exc


#: Failures that pass by themselves: the database away or restarting, a connection cut, a
#: serialisation failure or a deadlock (the transaction is simply run again), a timeout. Anything
#: else is a bug or a bad message: retried a few times, then given up (dead-lettered).
TRANSIENT: tuple[type[BaseException], ...] = (
    *UNAVAILABLE,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a failure that passes by itself (see TRANSIENT): try again, never give up."""
    return isinstance(exc, TRANSIENT)


def _encode_jsonb(value: object) -> bytes:
    if type(value) is bytes:  # encoded already (a CSV import's metadata, one per row)
        return b"\x01" + value
    return b"\x01" + json.dumps(value).encode()


def _decode_jsonb(data: bytes) -> object:
    return json.loads(data[1:])


#: Seconds a connection keeps a prepared statement before preparing it again (asyncpg's default: 300).
#: PostgreSQL plans a prepared statement for its parameters five times, then may keep one generic plan
#: for as long as the statement lives. A plan made while `deliveries` was still tiny (a fresh database,
#: the first seconds of a first campaign) is a sequential scan, and it stays in use, scanning every
#: row of a growing table at every batch, until an ANALYZE invalidates it. Preparing again every 15 s
#: bounds that to one short window, on a table still small, for the cost of a parse now and then.
STATEMENT_LIFETIME_S = 15


async def _init(conn: asyncpg.Connection) -> None:
    # Binary codecs, so that COPY (which is binary) can write json/jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=lambda v: json.dumps(v).encode(), decoder=json.loads, schema="pg_catalog", format="binary"
    )


async def _keep(_conn: asyncpg.Connection) -> None:
    """What a connection given back to the pool needs beyond asyncpg's own clean-up (an open
    transaction rolled back, listener callbacks dropped): nothing. Nothing here leaves session state
    on a pooled connection (no SET, no advisory lock held past its transaction but an import's slot,
    given back before the connection is, and a Listener
    UNLISTENs itself), so the default reset's round trip (`RESET ALL; UNLISTEN *; …`) on every
    release is saved."""


@asynccontextmanager
async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, statement_lifetime_s: int = STATEMENT_LIFETIME_S
) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose connections encode and decode json/jsonb as Python objects, and prepare each
    statement again after `statement_lifetime_s`; closed on exit."""
    with reaching(dsn):
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init,
            reset=_keep,
            max_cached_statement_lifetime=statement_lifetime_s,
        )
    try:
        yield pool
    finally:
        try:
            # close waits for every connection to come back: a bounded wait, so that one still held
            # by something that failed to let go cannot keep the process from exiting
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("pool.close_timeout", after_s=CLOSE_TIMEOUT_S)
            pool.terminate()


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's."""
    with reaching(dsn):
        conn = await asyncpg.connect(dsn, max_cached_statement_lifetime=STATEMENT_LIFETIME_S)
    await _init(conn)
    return conn
