"""Events about one delivery (producers: dispatcher and tracker)."""

from __future__ import annotations

from typing import Literal

from shared.messages.envelope import Message


class DeliveryStateChanged(Message):
    """A delivery moved to a new state (sent, delivered, failed, retrying, replied…)."""

    type: Literal["delivery.state_changed"] = "delivery.state_changed"
    version: Literal[1] = 1
    delivery_id: str
    campaign_id: str
    state: str
    error: str | None = None
