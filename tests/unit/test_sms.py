"""An SMS holds at most 1,600 characters (Twilio's 21617): a template whose own text is longer is
refused, a message rendered longer fails instead of being sent, and an agent's reply is cut."""

from __future__ import annotations

import pytest

from services.api.schemas import template_errors
from services.dispatcher.decide import decide
from shared.domain.pricing import sms_segments
from shared.domain.sms import MAX_CHARS, fit, message_too_long, template_too_long
from shared.domain.templating import check_budget
from tests.unit.test_domain import _row


@pytest.mark.parametrize("length", [0, 1, 160, 1599, 1600])
def test_a_text_that_fits_is_kept_as_it_is(length):
    text = "y" * length
    assert fit(text) == text
    assert message_too_long(text) is None
    assert template_too_long(text) is None


@pytest.mark.parametrize("length", [1601, 1812, 64_000])
def test_a_longer_reply_is_cut_to_1600_characters_ending_with_an_ellipsis(length):
    cut = fit("y" * length)
    assert len(cut) == MAX_CHARS == 1600
    assert cut == "y" * 1597 + "..."
    assert sms_segments(cut) == 11  # still GSM-7: 1,600 septets, 153 a segment


def test_an_emoji_counts_two_and_a_cut_never_splits_one():
    assert message_too_long("😀" * 800) is None
    assert message_too_long("😀" * 801) == "the rendered message is 1,602 characters; an SMS holds at most 1,600"
    assert fit("😀" * 800) == "😀" * 800
    assert fit("😀" * 1000) == "😀" * 798 + "..."  # 1,599 units: one more emoji would make 1,601
    assert fit("y" + "😀" * 1000) == "y" + "😀" * 798 + "..."  # 1,600


def test_the_reasons_say_how_long_and_how_long_an_sms_may_be():
    assert message_too_long("y" * 1812) == "the rendered message is 1,812 characters; an SMS holds at most 1,600"
    assert template_too_long("x" * 2000) == (
        "an SMS holds at most 1,600 characters; this template writes 2,000 without its variables"
    )


def test_the_budget_check_gives_what_a_template_writes_with_every_variable_empty():
    assert check_budget("x" * 2000) == "x" * 2000
    assert check_budget("Hi {{first_name}}, {{ plan|default('none') }}") == "Hi , none"
    assert check_budget("{{ 1 / 0 }}") is None  # fails on its own: the contact's to meet at send time


@pytest.mark.parametrize(
    ("source", "sms", "errors"),
    [
        ("x" * 2000, True, [{"field": "message_template", "reason": template_too_long("x" * 2000)}]),
        ("x" * 2000, False, []),  # email, a call: no such limit
        ("x" * 1600, True, []),
        ("{{ first_name }}" + "x" * 1590, True, []),  # fits without its variables: the contact decides
        ('{% for i in "y" * 2000 %}x{% endfor %}', True,
         [{"field": "message_template", "reason": template_too_long("x" * 2000)}]),
    ],
)
def test_an_sms_template_is_refused_only_when_its_own_text_is_too_long(source, sms, errors):
    assert template_errors("message_template", source, sms=sms) == errors


def test_an_sms_rendered_too_long_fails_and_other_channels_send_it():
    long_name = "A" * 1809
    decision = decide(_row(first_name=long_name))
    assert (decision.action, decision.reason) == (
        "fail", "the rendered message is 1,812 characters; an SMS holds at most 1,600")
    assert decide(_row(first_name="A" * 1597)).action == "send"  # 1,600: fits
    email = decide(_row(channel="email", opted_out_email=False, first_name=long_name))
    assert (email.action, email.text) == ("send", "Hi " + long_name)
