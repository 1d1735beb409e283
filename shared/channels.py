"""Which channels can send today (the API refuses to launch the others; their dispatchers idle)."""

from __future__ import annotations

#: Channels with a sender in `services/dispatcher/senders.py`.
SENDING_CHANNELS: frozenset[str] = frozenset({"sms", "voice", "email"})
