"""PURE: signed tokens for links (unsubscribe, sender verification): fields joined, then an
HMAC-SHA256 of them under CAMPAIGNS_SECRET_KEY with a context that keeps each kind of link apart.
The link alone is the credential, so a token cannot be forged or altered, and one kind of token is
never valid as another."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

#: Separates the signed payload from its MAC, and the payload's fields (neither occurs in urlsafe base64 or ids).
_DOT = "."
_SEP = "\x1f"
#: Longest token read (anything longer is not one of ours).
MAX_TOKEN = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the urlsafe alphabet, and only the one canonical spelling of the bytes."""
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data


def _mac(key: bytes, context: bytes, payload: bytes) -> bytes:
    return hmac.new(key, context + payload, hashlib.sha256).digest()


def seal(key: bytes, context: bytes, fields: tuple[str, ...]) -> str:
    """The urlsafe token carrying `fields`, signed for `context`."""
    if any(_SEP in f or not f for f in fields):
        raise ValueError("every field must be non-empty and free of control characters")
    payload = _SEP.join(fields).encode("utf-8")
    return _b64(payload) + _DOT + _b64(_mac(key, context, payload))


def unseal(key: bytes, context: bytes, token: str, count: int) -> tuple[str, ...] | None:
    """The `count` fields a token carries, or None when it is malformed, of another context, or its
    MAC does not match (compared in constant time)."""
    encoded, dot, signature = token.partition(_DOT)
    if not dot or not encoded or not signature or len(token) > MAX_TOKEN:
        return None
    try:
        payload, mac = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(key, context, payload)):
        return None
    try:
        fields = tuple(payload.decode("utf-8").split(_SEP))
    except UnicodeDecodeError:
        return None
    return fields if len(fields) == count else None
