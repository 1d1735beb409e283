"""The envelope every bus message travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every event and command: a type, a version and the ids that trace it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = Field(default_factory=_now)
    account_id: str
    correlation_id: str | None = None

    @property
    def routing_key(self) -> str:
        """`<type>.v<version>`, the key it is published with."""
        return f"{self.type}.v{self.version}"  # type: ignore[attr-defined]
