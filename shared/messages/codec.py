"""One TypeAdapter over every message type: bytes in, a model out (or DecodeError)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from shared.messages.campaign_events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignLaunched,
    CampaignPaused,
    CampaignResumed,
    RunCompleted,
)
from shared.messages.delivery_events import DeliveryStateChanged
from shared.messages.dispatch import SendEmail, SendSms, StartCall
from shared.messages.envelope import Message

AnyMessage = Annotated[
    CampaignCreated
    | CampaignLaunched
    | CampaignPaused
    | CampaignResumed
    | CampaignCancelled
    | RunCompleted
    | SendSms
    | SendEmail
    | StartCall
    | DeliveryStateChanged,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


class DecodeError(ValueError):
    """The bytes are not a message this version of the code understands."""


def encode(message: Message) -> bytes:
    """The message as JSON bytes."""
    return message.model_dump_json().encode()


def decode(data: bytes) -> AnyMessage:
    """The message in `data`, or DecodeError."""
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from exc
