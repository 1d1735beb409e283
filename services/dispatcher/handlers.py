"""The `send.<channel>` command handler: hand the batch to the lanes; the consumer acknowledges the
command once every delivery in it is recorded (or needs nothing more from this dispatcher)."""

from __future__ import annotations

from typing import Any

from services.dispatcher.lanes import Lanes
from shared.messages.dispatch import SendEmail, SendSms, StartCall


class SendHandler:
    """Handles one channel's send commands."""

    def __init__(self, lanes: Lanes):
        self._lanes = lanes

    async def __call__(self, message: Any) -> None:
        assert isinstance(message, SendSms | SendEmail | StartCall)
        await self._lanes.submit(message.campaign_id, message.delivery_ids)
