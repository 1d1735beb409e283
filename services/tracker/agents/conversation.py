"""What an agent is given: a contact's conversation within one campaign, from its own message on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Conversation:
    """The campaign, its channel, and the messages as the contact saw them, oldest first: the
    campaign's own message (each run's; on a call, its opening), then what was said. Each message
    is `{"direction": "out" | "in", "author": "campaign" | "contact" | "agent" | "system", "body"}`."""

    campaign_id: str
    channel: str
    messages: Sequence[Mapping[str, str]]
