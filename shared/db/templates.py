"""Message templates, scoped to their account."""

from __future__ import annotations

from typing import Any, cast

import asyncpg

from shared.db.connection import Executor
from shared.ids import new_id

_INSERT = """
INSERT INTO templates (id, account_id, name, channel, body, subject, html)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
"""
_GET = "SELECT * FROM templates WHERE account_id = $1 AND id = $2"
_LIST = """
SELECT * FROM templates WHERE account_id = $1
  AND ($2::text IS NULL OR channel = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
ORDER BY created_at DESC, id DESC LIMIT $5
"""
_UPDATE = """
UPDATE templates SET name = $3, body = $4, subject = $5, html = $6, updated_at = now()
WHERE account_id = $1 AND id = $2 RETURNING *
"""
_DELETE = "DELETE FROM templates WHERE account_id = $1 AND id = $2 RETURNING id"


async def insert(conn: Executor, account_id: str, data: dict[str, Any]) -> asyncpg.Record:
    """A new template."""
    row = await conn.fetchrow(
        _INSERT,
        new_id("template"),
        account_id,
        data["name"],
        data["channel"],
        data.get("body"),
        data.get("subject"),
        data.get("html"),
    )
    return cast(asyncpg.Record, row)  # INSERT … RETURNING: always a row


async def get(conn: Executor, account_id: str, template_id: str) -> asyncpg.Record | None:
    """One of the account's templates."""
    return await conn.fetchrow(_GET, account_id, template_id)


async def page(conn: Executor, account_id: str, channel: str | None, after: Any, limit: int) -> list[asyncpg.Record]:
    """A page of templates, newest first."""
    created, last_id = after if after else (None, None)
    return await conn.fetch(_LIST, account_id, channel, created, last_id, limit)


async def update(conn: Executor, account_id: str, template_id: str, data: dict[str, Any]) -> asyncpg.Record | None:
    """Replace a template's name and texts."""
    return await conn.fetchrow(
        _UPDATE, account_id, template_id, data["name"], data.get("body"), data.get("subject"), data.get("html")
    )


async def delete(conn: Executor, account_id: str, template_id: str) -> bool:
    """Delete a template; False if there was none."""
    return await conn.fetchval(_DELETE, account_id, template_id) is not None
