"""Which requests honour `Idempotency-Key`, and what a held key means for a new request."""

from __future__ import annotations

import hashlib

import pytest

from services.api.idempotency import EXEMPT, Verdict, honours, judge
from shared.db.idempotency import Stored

BODY = hashlib.sha256(b'{"name": "Ava"}').digest()
OTHER = hashlib.sha256(b'{"name": "Bob"}').digest()
ANSWERED = Stored("POST", "/agents", BODY, 201, {"Content-Type": "application/json"}, b"{}")
RUNNING = Stored("POST", "/agents", BODY, None, {}, None)


@pytest.mark.parametrize(
    ("stored", "method", "path", "body_hash", "verdict"),
    [
        (ANSWERED, "POST", "/agents", BODY, Verdict.REPLAY),
        (RUNNING, "POST", "/agents", BODY, Verdict.IN_PROGRESS),
        (ANSWERED, "POST", "/agents", OTHER, Verdict.MISMATCH),
        (ANSWERED, "POST", "/campaigns", BODY, Verdict.MISMATCH),
        (RUNNING, "POST", "/agents", OTHER, Verdict.MISMATCH),
        (ANSWERED, "POST", "/agents?x=1", BODY, Verdict.MISMATCH),
    ],
)
def test_judge(stored, method, path, body_hash, verdict):
    assert judge(stored, method, path, body_hash) is verdict


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/campaigns/camp_1/launch", True),
        ("/campaigns/camp_1/cancel", True),
        ("/contacts/import", True),
        ("/campaigns", False),
        ("/campaigns/camp_1/dry-run", False),
        ("/contact-groups/g_1/members", False),
        ("/agents", False),
    ],
)
def test_exempt_paths(path, exempt):
    assert (EXEMPT.fullmatch(path) is not None) is exempt


@pytest.mark.parametrize(
    ("method", "path", "honoured"),
    [
        ("POST", "/campaigns", True),
        ("POST", "/campaigns/{id}/dry-run", True),  # a route, as the OpenAPI document names it
        ("POST", "/campaigns/{id}/launch", False),
        ("POST", "/campaigns/camp_1/pause", False),
        ("POST", "/api-keys", False),
        ("POST", "/contacts/import", False),
        ("PATCH", "/campaigns/camp_1", False),
        ("DELETE", "/agents/ag_1", False),
    ],
)
def test_honours(method, path, honoured):
    assert honours(method, path) is honoured
