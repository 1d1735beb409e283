"""Pure decisions: campaign transitions, results, callbacks, retries, prices, phone numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.dispatcher.decide import decide
from shared.domain.campaign import InvalidTransition, transition
from shared.domain.deliveries import sms_status_change
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.pricing import estimate, sms_segments
from shared.domain.results import Counts, format_duration, reply_rate, results
from shared.domain.retry import classify_twilio, next_attempt

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "action", "resume_to", "expected"),
    [
        ("draft", "launch", None, "scheduled"),
        ("scheduled", "pause", None, "paused"),
        ("running", "pause", None, "paused"),
        ("paused", "resume", "running", "running"),
        ("paused", "resume", "scheduled", "scheduled"),
        ("draft", "cancel", None, "cancelled"),
        ("running", "cancel", None, "cancelled"),
        ("paused", "cancel", None, "cancelled"),
    ],
)
def test_transitions_that_fit(status, action, resume_to, expected):
    assert transition(status, action, resume_to).status == expected


@pytest.mark.parametrize(
    ("status", "action"),
    [("draft", "pause"), ("draft", "resume"), ("running", "launch"), ("running", "resume"),
     ("completed", "cancel"), ("cancelled", "resume"), ("failed", "launch")],
)
def test_transitions_that_do_not_fit_say_why(status, action):
    with pytest.raises(InvalidTransition) as info:
        transition(status, action)
    assert status in str(info.value)


def test_pause_remembers_where_to_resume():
    assert transition("running", "pause").resume_to == "running"


def test_results_in_the_seed_shape():
    body = results("camp_1", "completed", Counts(total=500, sent=498, delivered=485, replied=142, failed=2,
                                                  response_seconds=263))
    assert body["reply_rate"] == "29.3%"
    assert body["average_response_time"] == "4m 23s"
    assert body["total_contacts"] == 500


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.6, "1m 0s"), (3600, "1h 0s"), (90061, "1d 1h 1m 1s"), (None, None)]
)
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_reply_rate_without_receipts_uses_sent():
    assert reply_rate(Counts(sent=10, replied=1)) == "10.0%"
    assert reply_rate(Counts()) == "0.0%"


def _delivery(state="sent", provider_status="queued", sent_at=NOW, delivered_at=None):
    return {"state": state, "provider_status": provider_status, "sent_at": sent_at, "delivered_at": delivered_at}


def test_delivered_moves_sent_forward():
    change = sms_status_change(_delivery(), "delivered", None, NOW)
    assert change["state"] == "delivered"
    assert change["delivered_at"] == NOW


@pytest.mark.parametrize("late", ["sent", "queued", "sending", "accepted"])
def test_a_late_status_changes_nothing(late):
    assert sms_status_change(_delivery("delivered", "delivered", NOW, NOW), late, None, NOW) == {}


def test_a_callback_before_the_dispatcher_recorded_the_send():
    change = sms_status_change(_delivery("sending", None, None), "sent", None, NOW)
    assert change == {"provider_status": "sent", "sent_at": NOW, "state": "sent"}


def test_undelivered_keeps_sent_and_records_the_error():
    change = sms_status_change(_delivery(), "undelivered", "30003", NOW)
    assert change["state"] == "undelivered"
    assert "30003" in change["error"]


def test_unknown_status_is_ignored():
    assert sms_status_change(_delivery(), "exploded", None, NOW) == {}


@pytest.mark.parametrize(
    ("http_status", "code", "verdict"),
    [(429, 20429, "retry"), (500, None, "retry"), (None, None, "retry"), (503, 30008, "retry"),
     (400, 21211, "fail"), (400, 21614, "fail"), (400, 21610, "opt_out"), (400, 30004, "opt_out"),
     (400, 21999, "fail")],
)
def test_twilio_errors_are_sorted(http_status, code, verdict):
    assert classify_twilio(http_status, code) == verdict


def test_retries_until_the_limit():
    assert next_attempt(1, 2, 60, NOW, "retry").at == NOW + timedelta(seconds=60)
    assert next_attempt(3, 2, 60, NOW, "retry").at is None
    assert next_attempt(1, 2, 60, NOW, "fail").at is None


def test_sms_segments_and_estimates():
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("é" * 10) == 1
    # as carriers count: an extension character is two septets, an emoji two UTF-16 units, and
    # neither is split between two segments
    assert sms_segments("€" * 80) == 1
    assert sms_segments("€" * 81) == 2
    assert sms_segments("a" * 159 + "[") == 2
    assert sms_segments("a" * 152 + "€" + "a" * 10) == 2  # (the € opens the second segment)
    assert sms_segments("a" * 306) == 2
    assert sms_segments("a" * 307) == 3
    assert sms_segments("😀" * 35) == 1
    assert sms_segments("😀" * 36) == 2
    assert sms_segments("😀" * 34 + "aaa") == 2  # 71 units
    assert sms_segments("😀" * 71) == 3  # 33 a segment
    assert sms_segments("ж" * 70) == 1
    assert sms_segments("ж" * 1500) == 23
    prices = {"sms": Decimal("0.01"), "email": Decimal("0.001"), "voice_minute": Decimal("0.02")}
    assert estimate("sms", 10, prices, template="a" * 200) == Decimal("0.20")
    assert estimate("voice", 10, prices, call_minutes=3) == Decimal("0.60")


def test_phone_numbers_are_stored_in_e164():
    assert to_e164("+1 (415) 555-0123") == "+14155550123"
    assert to_e164("020 7946 0018", "GB") == "+442079460018"
    for bad in ("+1234567890", "+0987654321", "hello", "12"):
        with pytest.raises(InvalidPhone):
            to_e164(bad)


def test_a_national_number_without_a_country_says_what_is_missing():
    with pytest.raises(InvalidPhone, match=r"'\(415\) 555-0101' has no country code: write it as \+<country code>"):
        to_e164("(415) 555-0101")


def _row(**over):
    row = {"state": "queued", "campaign_status": "running", "channel": "sms", "opted_out_sms": False,
           "subject_template": None, "html_template": None,
           "message_template": "Hi {{first_name}}", "voice": {}, "agent_name": "Riley", "agent_opening": "",
           "first_name": "Ann", "last_name": None, "email": None, "phone": "+14155550123",
           "to_address": "+14155550123", "company": None, "metadata": {}}
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("over", "action"),
    [({}, "send"), ({"state": "sending"}, "duplicate"), ({"state": "sent"}, "duplicate"),
     ({"campaign_status": "paused"}, "pause"), ({"campaign_status": "cancelled"}, "cancel"),
     ({"opted_out_sms": True}, "skip"), ({"message_template": "Hi {{topic}}"}, "fail"),
     ({"phone": None, "to_address": None}, "skip")],
)
def test_dispatch_decisions(over, action):
    decision = decide(_row(**over))
    assert decision.action == action
    if over.get("to_address", "") is None:  # the contact's phone was removed since planning
        assert decision.reason == "the contact has no phone any more"
    if action == "send":
        assert decision.text == "Hi Ann"
    if action == "fail":
        assert decision.reason == "missing variable: topic"


@pytest.mark.parametrize(
    ("voice", "agent_opening", "text"),
    [({"opening_message": "Hello {{first_name}}, it's {{agent_name}}"}, "Agent's own", "Hello Ann, it's Riley"),
     ({}, "Hi {{first_name}}, this is {{agent_name}}.", "Hi Ann, this is Riley."),
     ({}, "", None)],
)
def test_a_call_without_a_template_opens_with_the_campaigns_else_the_agents_opening(voice, agent_opening, text):
    decision = decide(_row(channel="voice", opted_out_voice=False, message_template=None, voice=voice,
                           agent_opening=agent_opening))
    if text is None:
        assert (decision.action, decision.reason) == ("fail", "the rendered message is empty")
    else:
        assert (decision.action, decision.text) == ("send", text)
