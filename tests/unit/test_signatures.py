"""The tracker's own computation of X-Twilio-Signature, and the sandbox's signing of the callbacks
it sends, agree with Twilio's validator."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from services.tracker.signatures import TwilioSignatures
from shared.sandbox.twilio import FakeTwilio

TOKEN = "a-test-auth-token"
fields = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=10)


@given(fields, st.text(max_size=30))
def test_our_signature_is_twilios(params, query):
    url = "https://hooks.example.com/webhooks/twilio/sms/status?delivery_id=" + query
    assert TwilioSignatures(TOKEN, "https://hooks.example.com").signature(url, params) == (
        RequestValidator(TOKEN).compute_signature(url, params)
    )


@given(fields, st.text(max_size=30))
def test_the_sandbox_signs_its_callbacks_as_twilio_does(params, query):
    url = "http://127.0.0.1:8081/webhooks/twilio/sms/status?delivery_id=" + query
    headers = FakeTwilio("AC" + "0" * 32, TOKEN).signed(url, params)
    assert headers["X-Twilio-Signature"] == RequestValidator(TOKEN).compute_signature(url, params)


def test_a_signature_is_valid_only_for_its_url_and_fields_and_token():
    checker = TwilioSignatures(TOKEN, "http://127.0.0.1:8081")
    path = "/webhooks/twilio/sms/status?delivery_id=dlv_1"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    good = RequestValidator(TOKEN).compute_signature("http://127.0.0.1:8081" + path, params)
    assert checker.valid(path, params, good)
    assert not checker.valid(path, {**params, "MessageStatus": "failed"}, good)
    assert not checker.valid(path + "x", params, good)
    assert not checker.valid(path, params, RequestValidator("another").compute_signature(path, params))
    assert not checker.valid(path, params, None)
    assert not checker.valid(path, params, "")
    # repeated fields go through Twilio's own validator
    repeated = MultiDict([("To", "+1"), ("To", "+2"), ("Body", "hi")])
    signed = RequestValidator(TOKEN).compute_signature("http://127.0.0.1:8081" + path, repeated)
    assert checker.valid(path, repeated, signed)
