"""Keywords and the rules agent."""

from __future__ import annotations

import pytest

from services.tracker.agents import personalised, rules
from shared.domain.keywords import classify


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("STOP", "stop"), ("stop", "stop"), (" Stop. ", "stop"), ("unsubscribe", "stop"), ("opt out", "stop"),
     ("Revoke", "stop"), ("START", "start"), ("unstop", "start"), ("help", "help"), ("INFO", "help"),
     ("stop please", None), ("please stop", None), ("Stopping by later", None), ("", None)],
)
def test_keywords_match_the_whole_message(body, keyword):
    assert classify(body) == keyword


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("Stop", "stop"), ("UNSUBSCRIBE.", "stop"), ("opt  out!", "stop"), ("Yes", None), ("start", None),
     ("Info", None), ("help", None), ("Stop sending these, please", None)],
)
def test_by_email_only_an_opt_out_is_a_keyword(body, keyword):
    assert classify(body, "email") == keyword


def test_rules_agent():
    settings = {"rules": [{"keyword": "confirm", "reply": "Confirmed"}, {"keyword": "call me", "reply": "Calling"}],
                "default_reply": "A person will get back to you."}
    assert rules.answer(settings, "I confirm!") == "Confirmed"
    assert rules.answer(settings, "please CALL ME back") == "Calling"
    assert rules.answer(settings, "confirmation?") == "A person will get back to you."
    assert rules.answer({}, "anything") is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Thanks {{first_name}}, confirmed!", "Thanks Ann, confirmed!"),
     ("{{agent_name}} for {{ company }}: plan {{plan}}", "Riley for Acme: plan gold"),
     ("Hi {{ nickname }}!", "Hi !"),  # a variable the contact lacks: left empty
     ("Order {{ order.number }}", "Order {{ order.number }}"),  # cannot be rendered even so: as written
     ("Hi {{ first_name", "Hi {{ first_name"),  # saved before replies were checked: as written
     ("{{ ''.__class__ }}", "{{ ''.__class__ }}"),  # the sandbox refuses it: as written
     ("No variables", "No variables")],
)
def test_a_rules_reply_is_rendered_for_the_contact_and_never_fails(reply, expected):
    contact = {"first_name": "Ann", "company": "Acme", "metadata": {"plan": "gold"}}
    assert personalised(reply, {"id": "ag_1", "name": "Riley"}, contact) == expected
