"""Unsubscribe tokens: they round-trip, and nothing else passes."""

from __future__ import annotations

import pytest

from shared.unsubscribe import Subscription, make_token, read_token

KEY = b"k" * 32


def test_a_token_names_its_account_contact_and_channel():
    token = make_token(KEY, "acct_1", "ct_2")
    assert read_token(KEY, token) == Subscription("acct_1", "ct_2", "email")
    assert read_token(KEY, make_token(KEY, "acct_1", "ct_2", "sms")) == Subscription("acct_1", "ct_2", "sms")


def test_a_token_is_url_safe_and_stable():
    token = make_token(KEY, "acct_ÿ", "ct_~/+")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token == make_token(KEY, "acct_ÿ", "ct_~/+")
    assert token != make_token(KEY, "acct_ÿ", "ct_~/-")


def test_another_key_does_not_verify():
    assert read_token(b"other key", make_token(KEY, "acct_1", "ct_2")) is None


@pytest.mark.parametrize("position", [0, 5, -1, -5])
def test_any_changed_character_is_refused(position):
    token = make_token(KEY, "acct_1", "ct_2")
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    assert read_token(KEY, "".join(chars)) is None


def test_a_payload_swapped_under_a_valid_signature_is_refused():
    mine, theirs = make_token(KEY, "acct_1", "ct_2"), make_token(KEY, "acct_1", "ct_3")
    assert read_token(KEY, theirs.split(".")[0] + "." + mine.split(".")[1]) is None


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???", "x" * 2000 + ".y", "é.é"])
def test_malformed_tokens_are_refused(token):
    assert read_token(KEY, token) is None


def test_fields_must_be_present_and_plain():
    with pytest.raises(ValueError, match="non-empty"):
        make_token(KEY, "", "ct_1")
    with pytest.raises(ValueError, match="control"):
        make_token(KEY, "acct_1", "ct\x1f1")


def test_every_single_character_change_is_refused():
    # base64's spare bits included: only the one canonical spelling of a token is valid
    token = make_token(KEY, "acct_1", "ct_2")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        for other in alphabet:
            if other != char:
                assert read_token(KEY, token[:i] + other + token[i + 1:]) is None, (i, other)
