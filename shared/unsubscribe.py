"""PURE: unsubscribe tokens. A token names one contact of one account on one channel and carries an
HMAC-SHA256 of them under CAMPAIGNS_SECRET_KEY (`shared/signed.py`), so the link alone identifies
the recipient (RFC 8058: the one-click POST has no cookies or auth) and cannot be forged or altered."""

from __future__ import annotations

from dataclasses import dataclass

from shared.signed import seal, unseal

#: Domain separation: a MAC made here is never valid as any other MAC made with the same key.
_CONTEXT = b"campaigns.unsubscribe.v1\x00"


@dataclass(frozen=True)
class Subscription:
    """Who a valid token unsubscribes."""

    account_id: str
    contact_id: str
    channel: str


def make_token(key: bytes, account_id: str, contact_id: str, channel: str = "email") -> str:
    """The urlsafe token for this contact's unsubscribe link."""
    try:
        return seal(key, _CONTEXT, (account_id, contact_id, channel))
    except ValueError as exc:
        raise ValueError("account, contact and channel must be non-empty and free of control characters") from exc


def read_token(key: bytes, token: str) -> Subscription | None:
    """The subscription a token names, or None when it is malformed or its MAC does not match."""
    fields = unseal(key, _CONTEXT, token, 3)
    return Subscription(*fields) if fields is not None else None
