"""The ports: what a dispatcher needs of a provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.domain.retry import Verdict


@dataclass(frozen=True)
class Accepted:
    """The provider took the message: its id and initial status."""

    provider_id: str
    status: str


class ProviderError(Exception):
    """The provider refused or did not answer; `verdict` says whether to retry."""

    def __init__(self, message: str, verdict: Verdict, code: int | None = None, unknown: bool = False):
        super().__init__(message)
        self.verdict = verdict
        self.code = code
        #: True when the request may have been processed (timeout after sending): never resend blindly.
        self.unknown = unknown


class SmsProvider(Protocol):
    """Sends one SMS."""

    async def send_sms(self, *, to: str, from_: str, body: str, status_callback: str) -> Accepted:
        """Hand the message to the provider; Accepted or ProviderError."""
        ...


@dataclass(frozen=True)
class Found:
    """A message the provider holds, found by looking it up."""

    provider_id: str
    status: str


class SmsLookup(Protocol):
    """Finds a message the provider may have accepted before we could record it."""

    async def find_sms(self, *, to: str, from_: str | None, body: str, since: datetime) -> Found | None:
        """The provider's message to `to` with exactly `body` created since `since`, or None."""
        ...
