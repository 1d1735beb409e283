"""Twilio's X-Twilio-Signature, checked with the official validator against our public URL."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator


class TwilioSignatures:
    """Checks that a request came from Twilio (HMAC-SHA1 of URL + sorted params, auth token key)."""

    def __init__(self, auth_token: str, public_url: str):
        self._validator = RequestValidator(auth_token)
        self._public_url = public_url.rstrip("/")

    def url_for(self, raw_path: str) -> str:
        """The URL Twilio called: our public base URL + the path and query as received."""
        return self._public_url + raw_path

    def valid(self, raw_path: str, params: Mapping[str, Any], signature: str | None) -> bool:
        """True only for a present signature that matches. The URL as we know it is tried first
        (one HMAC); only a mismatch goes through the validator's own check, which also tries the
        URL with and without its default port."""
        if not signature:
            return False
        url = self.url_for(raw_path)
        if hmac.compare_digest(self._validator.compute_signature(url, params).encode(), signature.encode()):
            return True
        return bool(self._validator.validate(url, params, signature))
