"""Outbound webhooks' pure parts: the signature a receiver checks, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from shared.domain.webhooks import (
    EVENTS,
    disabled_reason,
    new_secret,
    retry_delay,
    signature,
    span,
    unknown_events,
    verify,
)


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_raw_body():
    secret, body = "whsec_test", b'{"id":"evt_1","type":"campaign.launched"}'
    header = signature(secret, 1764925200, body)
    expected = hmac.new(b"whsec_test", b"1764925200." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764925200,v1={expected}"
    assert verify(secret, header, body, now=1764925200 + 10)
    assert not verify(secret, header, body + b" ", now=1764925200)  # another body
    assert not verify("whsec_other", header, body, now=1764925200)  # another secret
    assert not verify(secret, header, body, now=1764925200 + 301)  # too old: a replay
    assert not verify(secret, "v1=abc", body, now=1764925200)


def test_secrets_are_random_and_prefixed():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert first != second
    assert len(first) > 40


def test_retries_back_off_exponentially_to_a_cap():
    delays = [retry_delay(n, 5, 3600) for n in range(1, 12)]
    assert delays[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert delays[-1] == timedelta(seconds=3600)
    # at the defaults, three days of retries is dozens of attempts, not thousands
    total, attempts = timedelta(), 0
    while total < timedelta(days=3):
        attempts += 1
        total += retry_delay(attempts, 5, 3600)
    assert 70 < attempts < 90


def test_unknown_event_names_are_named():
    assert unknown_events(["*", *EVENTS]) == []
    assert unknown_events(["campaign.pasued", "delivery.sent"]) == ["campaign.pasued"]


def test_a_disabled_endpoint_says_for_how_long_it_failed():
    assert disabled_reason(20, "answered 500") == "disabled after failing for 20 s: answered 500"
    assert disabled_reason(3 * 86400, "answered 500") == "disabled after failing for 3 days: answered 500"
    assert [span(s) for s in (0.5, 20, 90, 300, 7200, 86400, 5400)] == [
        "0.5 s", "20 s", "90 s", "5 min", "2 h", "1 day", "90 min"]
