"""PURE: unsubscribe tokens. A token names one contact of one account on one channel and carries an
HMAC-SHA256 of them under CAMPAIGNS_SECRET_KEY, so the link alone identifies the recipient
(RFC 8058: the one-click POST has no cookies or auth) and cannot be forged or altered."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

#: Separates the signed payload from its MAC, and the payload's fields (neither occurs in urlsafe base64 or ids).
_DOT = "."
_SEP = "\x1f"
#: Domain separation: a MAC made here is never valid as any other MAC made with the same key.
_CONTEXT = b"campaigns.unsubscribe.v1\x00"


@dataclass(frozen=True)
class Subscription:
    """Who a valid token unsubscribes."""

    account_id: str
    contact_id: str
    channel: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the urlsafe alphabet, and only the one canonical spelling of the bytes."""
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()


def make_token(key: bytes, account_id: str, contact_id: str, channel: str = "email") -> str:
    """The urlsafe token for this contact's unsubscribe link."""
    fields = (account_id, contact_id, channel)
    if any(_SEP in f or not f for f in fields):
        raise ValueError("account, contact and channel must be non-empty and free of control characters")
    payload = _SEP.join(fields).encode("utf-8")
    return _b64(payload) + _DOT + _b64(_mac(key, payload))


def read_token(key: bytes, token: str) -> Subscription | None:
    """The subscription a token names, or None when it is malformed or its MAC does not match
    (compared in constant time)."""
    encoded, dot, signature = token.partition(_DOT)
    if not dot or not encoded or not signature or len(token) > 1024:
        return None
    try:
        payload, mac = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    try:
        account_id, contact_id, channel = payload.decode("utf-8").split(_SEP)
    except ValueError:  # bad UTF-8, or not three fields
        return None
    return Subscription(account_id, contact_id, channel)
