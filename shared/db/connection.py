"""The connection types the query modules take (type aliases; nothing here runs a query)."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: One connection: opened with `connect`, or acquired from the pool (`async with pool.acquire() as conn`).
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
#: Anything that runs a statement: a connection, or the pool (which lends one for the statement).
Executor: TypeAlias = Connection | asyncpg.Pool
