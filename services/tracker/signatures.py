"""Twilio's X-Twilio-Signature: HMAC-SHA1 of the URL Twilio called and its sorted form fields,
under the auth token, checked against our public URL."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator

from shared.domain.twilio_signature import twilio_signature


class TwilioSignatures:
    """Checks that a request came from Twilio (HMAC-SHA1 of URL + sorted params, auth token key)."""

    def __init__(self, auth_token: str, public_url: str):
        self._validator = RequestValidator(auth_token)
        self._key = auth_token.encode("utf-8")
        self._public_url = public_url.rstrip("/")

    def url_for(self, raw_path: str) -> str:
        """The URL Twilio called: our public base URL + the path and query as received."""
        return self._public_url + raw_path

    def signature(self, url: str, params: Mapping[str, str]) -> str:
        """The signature of a request with single-valued form fields, as Twilio's validator computes
        it (the URL, then each field's name and value in name order)."""
        return twilio_signature(self._key, url, params)

    def valid(self, raw_path: str, params: Mapping[str, Any], signature: str | None) -> bool:
        """True only for a present signature that matches. The URL as we know it is tried first
        (one HMAC); only a mismatch goes through Twilio's own validator, which also tries the URL
        with and without its default port."""
        if not signature:
            return False
        url = self.url_for(raw_path)
        fields = dict(params.items())
        single = len(fields) == len(params) and all(type(v) is str for v in fields.values())
        if single and hmac.compare_digest(self.signature(url, fields).encode(), signature.encode()):
            return True
        return bool(self._validator.validate(url, params, signature))
