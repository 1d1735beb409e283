"""PURE: Twilio's X-Twilio-Signature of a request with single-valued form fields: HMAC-SHA1, under
the auth token, of the URL Twilio called followed by each field's name and value in name order,
in base64 (what twilio's `RequestValidator.compute_signature` computes, without its per-call set-up).
The tracker checks callbacks with it; the sandbox signs the callbacks it sends with it."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping


def twilio_signature(key: bytes, url: str, params: Mapping[str, str]) -> str:
    """The signature of a request to `url` with the form fields `params`, under the auth token `key`."""
    text = url + "".join([name + params[name] for name in sorted(params)])
    return base64.b64encode(hmac.digest(key, text.encode("utf-8"), "sha1")).decode()
