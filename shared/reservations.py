"""What a run of a campaign holds back from its account's balance: its estimate (`pricing`), for
every contact, or when the balance cannot cover that, for the contacts it can reach (the opted out
and those without an address are skipped at no cost), so that they never make a launch a 402."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from shared.db import balance
from shared.db import campaigns as db
from shared.db.connection import Connection
from shared.domain.pricing import estimate_run


async def reserve_run(conn: Connection, account: asyncpg.Record, campaign: asyncpg.Record) -> tuple[bool, Decimal]:
    """Hold back one run's estimate (in the caller's transaction): whether the balance covered it,
    and the estimate (the tighter one when the first did not fit)."""
    cost = estimate_run(campaign, account)
    if await balance.reserve(conn, account["id"], campaign["id"], cost):
        return True, cost
    count = await db.reachable(
        conn, account["id"], campaign["id"], list(campaign["group_ids"] or []), campaign["channel"]
    )
    if count >= campaign["total_contacts"]:
        return False, cost
    cost = estimate_run({**dict(campaign), "total_contacts": count}, account)
    return await balance.reserve(conn, account["id"], campaign["id"], cost), cost
