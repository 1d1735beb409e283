"""PURE: the signed link that verifies an email sender. It names the account and the address and
expires (`TTL`); signed under CAMPAIGNS_SECRET_KEY (`shared/signed.py`), so only the mailbox it
was sent to can know it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.signed import seal, unseal

_CONTEXT = b"campaigns.sender-verification.v1\x00"
#: How long a verification link works.
TTL = timedelta(hours=48)


@dataclass(frozen=True)
class Claim:
    """An account's claim to send from an email address, as a valid link carries it."""

    account_id: str
    address: str
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        """Whether the link is too old to verify anything."""
        return now >= self.expires_at


def make_token(key: bytes, account_id: str, address: str, now: datetime) -> str:
    """The token of the link mailed to `address` for `account_id`, valid until now + TTL."""
    return seal(key, _CONTEXT, (account_id, address, str(int((now + TTL).timestamp()))))


def read_token(key: bytes, token: str) -> Claim | None:
    """The claim a token carries, or None when it is not one of ours (expired ones are returned:
    `Claim.expired` tells)."""
    fields = unseal(key, _CONTEXT, token, 3)
    if fields is None or not fields[2].isdigit():
        return None
    return Claim(fields[0], fields[1], datetime.fromtimestamp(int(fields[2]), UTC))
