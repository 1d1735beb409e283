"""The twilio client's form bodies, encoded by `form_body` (yarl's quoter) instead of aiohttp's
FormData: the same fields arrive, whatever their characters, at the fake Twilio over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from shared.providers.twilio_client import form_body
from shared.providers.twilio_sms import TwilioSms
from tests.conftest import TWILIO_SID, TWILIO_TOKEN
from tests.support import new_phone

names = st.text(min_size=1, max_size=12)
texts = st.text(max_size=40)


@given(st.dictionaries(names, texts | st.lists(texts, min_size=1, max_size=3), max_size=8))
def test_a_form_body_decodes_to_its_fields_in_order(fields):
    body = form_body(fields)
    assert body is not None
    expected = [(k, v) for k, vs in fields.items() for v in ([vs] if isinstance(vs, str) else vs)]
    assert parse_qsl(body.decode("ascii"), keep_blank_values=True) == expected


def test_a_value_yarl_does_not_take_is_left_to_aiohttp():
    assert form_body({"SmartEncoded": True}) is None


async def test_a_message_with_every_kind_of_character_arrives_as_sent(fake_twilio):
    provider = TwilioSms(TWILIO_SID, TWILIO_TOKEN, fake_twilio.url, timeout=5)
    phone = new_phone()
    body = "Hi Zoë, 50% off + free: a&b=c #1 /?:@ ✓\nReply STOP"
    try:
        await provider.send_sms(to=phone, from_="+15005550006", body=body, status_callback="")
    finally:
        await provider.close()
    [sent] = fake_twilio.sent_to(phone)
    assert sent.get("Body") == body
    assert sent.get("From") == "+15005550006"
    assert sent.headers.get("Content-Type") == "application/x-www-form-urlencoded"
