"""Sender-verification links: they name the account and the address, expire, and nothing else
passes (another key, another kind of link, a changed character)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.sender_verification import TTL, Claim, make_token, read_token
from shared.unsubscribe import make_token as unsubscribe_token

KEY = b"k" * 32
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_link_names_its_account_and_address_until_it_expires():
    claim = read_token(KEY, make_token(KEY, "acct_1", "news@example.com", NOW))
    assert claim == Claim("acct_1", "news@example.com", NOW + TTL)
    assert not claim.expired(NOW + TTL - timedelta(seconds=1))
    assert claim.expired(NOW + TTL)


def test_nothing_else_passes():
    token = make_token(KEY, "acct_1", "news@example.com", NOW)
    assert read_token(b"another key", token) is None
    assert read_token(KEY, unsubscribe_token(KEY, "acct_1", "news@example.com", "email")) is None
    assert read_token(KEY, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert read_token(KEY, "") is None
