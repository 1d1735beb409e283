"""Commands to the dispatchers, one queue per channel (producer: scheduler)."""

from __future__ import annotations

from typing import Literal

from shared.messages.envelope import Message


class SendSms(Message):
    """Send one delivery's SMS."""

    type: Literal["send.sms"] = "send.sms"
    version: Literal[1] = 1
    delivery_id: str
    campaign_id: str


class SendEmail(Message):
    """Send one delivery's email."""

    type: Literal["send.email"] = "send.email"
    version: Literal[1] = 1
    delivery_id: str
    campaign_id: str


class StartCall(Message):
    """Place one delivery's voice call."""

    type: Literal["send.voice"] = "send.voice"
    version: Literal[1] = 1
    delivery_id: str
    campaign_id: str


#: The command type for each channel.
COMMANDS: dict[str, type[SendSms | SendEmail | StartCall]] = {
    "sms": SendSms,
    "email": SendEmail,
    "voice": StartCall,
}
