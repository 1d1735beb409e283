"""`Row`: how the pure functions read a row, whether an `asyncpg.Record` or a plain mapping."""

from __future__ import annotations

from typing import Any, Protocol, overload


class Row(Protocol):
    """Read access by column name: an `asyncpg.Record` (which is no `Mapping`) or any `Mapping[str, Any]`."""

    def __getitem__(self, key: str, /) -> Any: ...

    @overload
    def get(self, key: str, /) -> Any: ...
    @overload
    def get(self, key: str, default: Any, /) -> Any: ...
