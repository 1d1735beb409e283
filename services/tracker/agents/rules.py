"""PURE: the built-in rules agent: keyword → reply, offline."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def answer(settings: Mapping[str, Any], message: str) -> str | None:
    """The reply of the first rule whose keyword is a word of `message` (any case), else the
    `default_reply`, else None. Settings: `{"rules": [{"keyword", "reply"}], "default_reply"}`."""
    words = set(re.findall(r"[\w']+", message.upper()))
    for rule in settings.get("rules") or []:
        keyword = str(rule.get("keyword", "")).upper().strip()
        if keyword and (keyword in words or (" " in keyword and keyword in message.upper())):
            return str(rule.get("reply") or "") or None
    default = settings.get("default_reply")
    return str(default) if default else None
