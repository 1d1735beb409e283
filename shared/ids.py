"""Prefixed, random object ids (`camp_…`, `ag_…`, `dlv_…`)."""

from __future__ import annotations

import secrets

#: Prefix of each kind of object.
PREFIXES = {
    "account": "acct",
    "agent": "ag",
    "campaign": "camp",
    "contact": "ct",
    "group": "grp",
    "run": "run",
    "delivery": "dlv",
    "message": "msg",
    "template": "tpl",
    "webhook_endpoint": "we",
}


def new_id(kind: str) -> str:
    """A new id for an object of `kind`: its prefix, an underscore and 16 hex digits."""
    return f"{PREFIXES[kind]}_{secrets.token_hex(8)}"
