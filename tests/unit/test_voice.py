"""Voice: call status callbacks → delivery changes (order-safe, retries), minutes, stop phrases, TwiML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tracker.voice import listening, say_and_hang_up
from shared.domain.calls import (
    amd_param,
    answered_by,
    asks_to_stop,
    call_action,
    call_minutes,
    call_status_change,
    machine_detection,
)

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
SID = "CA" + "1" * 32


def delivery(**overrides):
    row = {"state": "sent", "provider_id": SID, "provider_status": "queued", "sent_at": NOW - timedelta(seconds=30),
           "delivered_at": None, "attempts": 1, "max_retries": 2, "retry_interval": 60, "campaign_status": "running"}
    return row | overrides


@pytest.mark.parametrize(("status", "after"), [("initiated", "queued"), ("ringing", "initiated"),
                                               ("in-progress", "ringing"), ("completed", "in-progress")])
def test_progress_moves_forward(status, after):
    change = call_status_change(delivery(provider_status=after), SID, status, 42, None, NOW)
    assert change.change["provider_status"] == status


@pytest.mark.parametrize(("late", "recorded"), [("ringing", "in-progress"), ("initiated", "ringing"),
                                                ("in-progress", "completed"), ("ringing", "ringing")])
def test_a_late_or_repeated_status_changes_nothing(late, recorded):
    change = call_status_change(delivery(provider_status=recorded), SID, late, None, None, NOW)
    assert change.change == {}
    assert not change.ended


def test_progress_does_not_end_the_call():
    change = call_status_change(delivery(), SID, "in-progress", None, None, NOW)
    assert change.change == {"provider_status": "in-progress"}
    assert (change.ended, change.minutes) == (False, 0)


def test_completed_delivers_and_charges_every_started_minute():
    change = call_status_change(delivery(provider_status="in-progress"), SID, "completed", 61, None, NOW)
    assert change.change["state"] == "delivered"
    assert change.change["delivered_at"] == NOW
    assert "sent_at" not in change.change  # kept from when the call was placed
    assert (change.ended, change.minutes) == (True, 2)


def test_completed_before_the_dispatcher_recorded_the_call():
    # the callback beat mark_sent: the call is ours (no previous attempt), and it is sent too
    row = delivery(state="sending", provider_id=None, provider_status=None, sent_at=None)
    change = call_status_change(row, SID, "completed", 5, None, NOW)
    assert change.change["state"] == "delivered"
    assert change.change["sent_at"] == NOW
    assert change.minutes == 1


@pytest.mark.parametrize("status", ["busy", "no-answer"])
def test_busy_or_unanswered_is_called_again_after_the_interval(status):
    change = call_status_change(delivery(provider_status="ringing"), SID, status, 0, None, NOW)
    assert change.change["state"] == "planned"
    assert change.change["send_at"] == NOW + timedelta(seconds=60)
    assert change.change["sent_at"] is None  # not counted as sent
    assert change.change["provider_status"] is None  # the next call starts afresh
    assert change.change["error"] == f"twilio {status}"
    assert change.ended
    assert change.minutes == 0


def test_busy_with_retries_exhausted_fails():
    change = call_status_change(delivery(attempts=3, max_retries=2), SID, "busy", 0, None, NOW)
    assert change.change["state"] == "failed"
    assert change.change["failed_at"] == NOW
    assert "gave up after 3 attempts" in change.change["error"]
    assert change.change["sent_at"] is None
    assert change.ended


def test_busy_on_a_cancelled_campaign_is_cancelled_not_retried():
    change = call_status_change(delivery(campaign_status="cancelled"), SID, "busy", 0, None, NOW)
    assert change.change["state"] == "cancelled"
    assert change.ended


def test_busy_on_a_paused_campaign_waits_for_resume():
    change = call_status_change(delivery(campaign_status="paused"), SID, "no-answer", 0, None, NOW)
    assert change.change["state"] == "planned"


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_failed_or_canceled_fails(status):
    change = call_status_change(delivery(), SID, status, None, "13227", NOW)
    assert change.change["state"] == "failed"
    assert change.change["error"] == f"twilio {status} (error 13227)"
    assert change.change["sent_at"] is None  # never answered: not counted as sent
    assert change.ended


def test_callbacks_of_a_previous_attempt_are_ignored():
    old = "CA" + "0" * 32
    # the delivery was planned again after a busy call: nothing is under way
    planned = delivery(state="planned", provider_status=None)
    assert call_status_change(planned, old, "ringing", None, None, NOW).change == {}
    # being called again: the recorded sid is the previous call's
    sending = delivery(state="sending", provider_id=old, provider_status=None)
    assert call_status_change(sending, old, "ringing", None, None, NOW).change == {}
    assert call_status_change(sending, SID, "ringing", None, None, NOW).change == {"provider_status": "ringing"}
    # placed again: the new sid is recorded; the old call's late events are not about it
    assert call_status_change(delivery(), old, "completed", 30, None, NOW).change == {}


@pytest.mark.parametrize("state", ["delivered", "failed", "cancelled"])
def test_a_finished_delivery_never_moves(state):
    change = call_status_change(delivery(state=state, provider_status="completed"), SID, "busy", 0, None, NOW)
    assert change.change == {}
    assert not change.ended


def test_unknown_status_changes_nothing():
    assert call_status_change(delivery(), SID, "answered-by-robot", None, None, NOW).change == {}


@pytest.mark.parametrize(("seconds", "minutes"), [(None, 0), (0, 0), (1, 1), (60, 1), (61, 2), (300, 5), (301, 6)])
def test_call_minutes(seconds, minutes):
    assert call_minutes(seconds) == minutes


@pytest.mark.parametrize(("speech", "stop"), [
    ("Stop calling me.", True), ("Please do not call this number again", True), ("Don\u2019t call me", True),
    ("stop", True), ("Unsubscribe", True), ("Remove me from your list", True),
    ("Yes, that works for me.", False), ("Can we stop by on Tuesday?", False), ("Call me tomorrow", False),
])
def test_asks_to_stop(speech, stop):
    assert asks_to_stop(speech) is stop


@pytest.mark.parametrize(("mode", "param"), [("off", None), ("hangup", "Enable"), ("voicemail", "DetectMessageEnd")])
def test_each_machine_detection_mode_asks_twilio_for_its_detection(mode, param):
    assert amd_param(machine_detection({"machine_detection": mode})) == param


def test_an_unset_or_unknown_machine_detection_is_off():
    assert machine_detection(None) == machine_detection({}) == machine_detection({"machine_detection": "x"}) == "off"


@pytest.mark.parametrize(("mode", "who", "action"), [
    ("off", "machine_end_beep", "converse"),
    ("voicemail", None, "converse"),
    ("voicemail", "human", "converse"),
    ("voicemail", "unknown", "converse"),
    ("voicemail", "machine_end_beep", "leave_message"),
    ("voicemail", "machine_end_silence", "leave_message"),
    ("voicemail", "machine_end_other", "leave_message"),
    ("voicemail", "fax", "hang_up"),
    ("hangup", "machine_start", "hang_up"),
    ("hangup", "fax", "hang_up"),
    ("hangup", "human", "converse"),
])
def test_who_answered_decides_what_the_call_does(mode, who, action):
    assert call_action(mode, who) == action


def test_answered_by_is_recorded_as_twilio_says_it_and_anything_else_as_unknown():
    assert [answered_by(v) for v in (None, "", "Human", "machine_end_beep", "robot")] == [
        None, None, "human", "machine_end_beep", "unknown"]


ACTION = "https://hooks.example.com/webhooks/twilio/voice/gather?delivery_id=dlv_1"


def test_a_call_listens_in_the_language_it_speaks():
    # Twilio recognises speech in <Gather>'s own `language` (en-US when it has none), not <Say>'s
    twiml = listening("Hello", {"voice": "Polly.Amy", "language": "en-GB"}, ACTION)
    assert '<Say language="en-GB" voice="Polly.Amy">Hello</Say>' in twiml
    assert '<Gather action="https://hooks.example.com/webhooks/twilio/voice/gather?delivery_id=dlv_1" ' in twiml
    assert 'input="speech" language="en-GB" speechTimeout="auto"' in twiml
    # a reply said in the agent's turn, and no opening at all, listen the same way
    assert 'language="fr-FR"' in listening("", {"language": "fr-FR"}, ACTION)
    assert "<Say" not in listening("", {"language": "fr-FR"}, ACTION)


def test_a_call_without_a_language_leaves_both_to_twilio():
    twiml = listening("Hello", {"voice": "alice"}, ACTION)
    assert '<Say voice="alice">Hello</Say>' in twiml
    assert "language" not in twiml
    assert "language" not in listening("Hello", None, ACTION)
    assert say_and_hang_up("Bye").endswith("<Response><Say>Bye</Say><Hangup /></Response>")
