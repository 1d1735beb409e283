"""Keywords and the rules agent."""

from __future__ import annotations

import pytest

from services.tracker.agents import rules
from shared.domain.keywords import classify


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("STOP", "stop"), ("stop", "stop"), (" Stop. ", "stop"), ("unsubscribe", "stop"), ("opt out", "stop"),
     ("Revoke", "stop"), ("START", "start"), ("unstop", "start"), ("help", "help"), ("INFO", "help"),
     ("stop please", None), ("please stop", None), ("Stopping by later", None), ("", None)],
)
def test_keywords_match_the_whole_message(body, keyword):
    assert classify(body) == keyword


def test_rules_agent():
    settings = {"rules": [{"keyword": "confirm", "reply": "Confirmed"}, {"keyword": "call me", "reply": "Calling"}],
                "default_reply": "A person will get back to you."}
    assert rules.answer(settings, "I confirm!") == "Confirmed"
    assert rules.answer(settings, "please CALL ME back") == "Calling"
    assert rules.answer(settings, "confirmation?") == "A person will get back to you."
    assert rules.answer({}, "anything") is None
