"""Commands to the dispatchers, one queue per channel (producer: scheduler).

Version 2 carries a batch: up to `MAX_BATCH` deliveries of one campaign per message (version 1,
one `delivery_id`, is still read, as a batch of one).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from shared.messages.envelope import Message

#: Most deliveries one command carries.
MAX_BATCH = 1000


class _SendBatch(Message):
    """Send these deliveries of one campaign (each claimed, sent and recorded on its own terms)."""

    version: Literal[1, 2] = 2
    campaign_id: str
    delivery_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, data: Any) -> Any:
        """Version 1 named one `delivery_id`."""
        if isinstance(data, dict) and "delivery_id" in data and "delivery_ids" not in data:
            data = {k: v for k, v in data.items() if k != "delivery_id"} | {"delivery_ids": [data["delivery_id"]]}
        return data


class SendSms(_SendBatch):
    """Send SMS to a batch of one campaign's deliveries."""

    type: Literal["send.sms"] = "send.sms"


class SendEmail(_SendBatch):
    """Send a batch of one campaign's emails."""

    type: Literal["send.email"] = "send.email"


class StartCall(_SendBatch):
    """Place a batch of one campaign's voice calls."""

    type: Literal["send.voice"] = "send.voice"


#: The command type for each channel.
COMMANDS: dict[str, type[SendSms | SendEmail | StartCall]] = {
    "sms": SendSms,
    "email": SendEmail,
    "voice": StartCall,
}
