"""PURE: the dashboard's forms as the API's request bodies (so the same models check them and
the same errors come back), and stored objects as form values."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from multidict import MultiMapping

from services.api.schemas import CALL_SETTINGS, VOICE_SETTINGS
from shared.row import Row

#: Days a sending window may exclude, as the API names them.
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: A voice campaign's call settings (its `voice` object), each a form field `voice_<key>`.
VOICE = VOICE_SETTINGS
#: A recurrence's settings (its `recurrence` object), each a form field `recurrence_<key>` (weekdays: checkboxes).
RECURRENCE = ("frequency", "interval", "month_day", "until", "count")
#: The circuit breaker's thresholds (its `circuit_breaker` object), each a form field `breaker_<key>`.
BREAKER = ("failure_rate", "bounce_rate", "opt_out_rate", "min_sends")
_NUMBERS = frozenset({"call_duration_limit", "interval", "month_day", "count", "min_sends"})
#: The circuit breaker's rates, typed as decimals (`0.2`).
_RATES = frozenset({"failure_rate", "bounce_rate", "opt_out_rate"})
_SPLIT = re.compile(r"[\s,;]+")
_WHOLE = re.compile(r"[+-]?\d{1,30}")  # (longer: as typed, for the API to refuse; no giant int)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


#: A submitted form (aiohttp's MultiDictProxy): one value, or every value, of a field.
Form = MultiMapping[Any]


def _text(form: Form, name: str) -> str | None:
    value = str(form.get(name) or "").replace("\r\n", "\n").strip()
    return value or None


def _whole(form: Form, name: str) -> int | str | None:
    """A whole number typed in a field the API reads as JSON (it takes numbers only as numbers): as
    a number, or as typed, for the API to name what is wrong with it."""
    value = _text(form, name)
    return int(value) if value is not None and _WHOLE.fullmatch(value) else value


def decimal(form: Form, name: str) -> float | str | None:
    """A decimal typed in a field (a rate): as a number, or as typed, for the API to name what is
    wrong with it (the API takes numbers only as JSON numbers)."""
    value = _text(form, name)
    return float(value) if value is not None and _DECIMAL.fullmatch(value) else value


def addresses(raw: str | None) -> list[str]:
    """Phones or emails typed one a line (or separated by commas or spaces)."""
    return [item for item in _SPLIT.split(raw or "") if item]


def campaign_request(form: Form, *, editing: bool) -> dict[str, Any]:
    """A campaign form as the body of `POST /campaigns` (or, `editing`, of `PATCH`: every field
    given, an emptied one cleared)."""
    data: dict[str, Any] = {
        "name": _text(form, "name"),
        "description": _text(form, "description"),
        "channel": _text(form, "channel"),
        "agent_id": _text(form, "agent_id"),
        "contacts": addresses(_text(form, "contacts")),
        "contact_group_ids": [g for g in form.getall("contact_group_ids", []) if g],
        "template_id": _text(form, "template_id"),
        "message_template": _text(form, "message_template"),
        "subject": _text(form, "subject"),
        "html_template": _text(form, "html_template"),
        "scheduled_at": _text(form, "scheduled_at"),
        "timezone": _text(form, "timezone"),
        "max_concurrent": _whole(form, "max_concurrent"),
        "max_retries": _whole(form, "max_retries"),
        "retry_interval": _text(form, "retry_interval"),
        "from_number": _text(form, "from_number"),
    }
    start, end = _whole(form, "start_hour"), _whole(form, "end_hour")
    excluded = [d for d in form.getall("excluded_days", []) if d]
    if start is not None or end is not None or excluded:
        data["sending_window"] = {"start_hour": start, "end_hour": end, "excluded_days": excluded}
    elif editing:
        data["sending_window"] = None
    data.update(_objects(form, editing=editing))
    if editing:
        return data  # every field given: an emptied one is cleared (and checked as a create's)
    return {k: v for k, v in data.items() if v not in (None, [])}


def _given(form: Form, prefix: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The fields `<prefix><key>` given, by key (whole numbers as numbers)."""
    values = {k: _typed(form, prefix + k, k) for k in keys}
    return {k: v for k, v in values.items() if v is not None}


def _typed(form: Form, name: str, key: str) -> int | float | str | None:
    """Field `name` as the API takes setting `key`: a whole number, a decimal, or text."""
    if key in _NUMBERS:
        return _whole(form, name)
    return decimal(form, name) if key in _RATES else _text(form, name)


def _objects(form: Form, *, editing: bool) -> dict[str, Any]:
    """The form's `voice`, `recurrence` and `circuit_breaker` objects: only the keys given (a
    PATCH clears an emptied one: the form shows all of them)."""
    data: dict[str, Any] = {}
    voice = _given(form, "voice_", VOICE)
    if voice or editing:
        data["voice"] = voice
    recurrence = _given(form, "recurrence_", RECURRENCE)
    weekdays = [d for d in form.getall("recurrence_weekdays", []) if d]
    if weekdays:
        recurrence["weekdays"] = weekdays
    if recurrence or editing:
        data["recurrence"] = recurrence or None
    breaker = _given(form, "breaker_", BREAKER)
    switch = _text(form, "breaker_enabled")  # empty: the platform's default
    if switch is not None:
        breaker["enabled"] = {"on": True, "off": False}.get(switch, switch)
    if breaker or editing:
        data["circuit_breaker"] = breaker or None
    return data


def campaign_field(name: str) -> str:
    """The form field an API error about campaign field `name` goes next to: `voice.opening_message`
    (or `opening_message`, which the API may name at the top level) next to `voice_opening_message`,
    `recurrence.until` next to `recurrence_until`, `circuit_breaker.min_sends` next to `breaker_min_sends`."""
    top, _, key = name.partition(".")
    if top == "voice" and key in VOICE:
        return f"voice_{key}"
    if top in CALL_SETTINGS and not key:
        return f"voice_{top}"
    if top == "recurrence":
        return f"recurrence_{key or 'frequency'}"
    if top == "circuit_breaker":
        return f"breaker_{key or 'enabled'}"
    return name


def campaign_values(row: Row | None, contacts: list[str]) -> dict[str, Any]:
    """A stored campaign as the form's values (a new campaign's defaults when None)."""
    if row is None:
        return {
            "channel": "sms", "max_concurrent": 1, "max_retries": 2, "retry_interval": 300, "excluded_days": [],
            "recurrence_weekdays": [],
        }  # fmt: skip
    window = row["sending_window"] or {}
    voice, recurrence, breaker = row["voice"] or {}, row["recurrence"] or {}, row["circuit_breaker"] or {}
    enabled = breaker.get("enabled")
    scheduled: datetime | None = row["scheduled_at"] or row["scheduled_wall"]
    return {
        "name": row["name"],
        "description": row["description"],
        "channel": row["channel"],
        "agent_id": row["agent_id"],
        "contacts": "\n".join(contacts),
        "contact_group_ids": list(row["group_ids"]),
        "template_id": row["template_id"],
        "message_template": row["message_template"],
        "subject": row["subject_template"],
        "html_template": row["html_template"],
        # the schedule as it was given: with its offset (one instant), or a wall-clock time
        "scheduled_at": scheduled.isoformat(timespec="minutes") if scheduled else None,
        "timezone": row["timezone"],
        "start_hour": window.get("start_hour"),
        "end_hour": window.get("end_hour"),
        "excluded_days": window.get("excluded_days") or [],
        "max_concurrent": row["max_concurrent"],
        "max_retries": row["max_retries"],
        "retry_interval": row["retry_interval"],
        "from_number": row["from_number"],
        **{f"voice_{k}": voice.get(k) for k in VOICE},
        **{f"recurrence_{k}": recurrence.get(k) for k in RECURRENCE},
        "recurrence_weekdays": recurrence.get("weekdays") or [],
        **{f"breaker_{k}": breaker.get(k) for k in BREAKER},
        "breaker_enabled": None if enabled is None else "on" if enabled else "off",
    }


def submitted_values(form: Form) -> dict[str, Any]:
    """A submitted campaign form's values, to show it again with its errors."""
    values = {name: form.get(name) for name in form_names()}
    values["contact_group_ids"] = form.getall("contact_group_ids", [])
    values["excluded_days"] = form.getall("excluded_days", [])
    values["recurrence_weekdays"] = form.getall("recurrence_weekdays", [])
    return values


def form_names() -> tuple[str, ...]:
    """The single-valued fields of the campaign form."""
    return (
        "name", "description", "channel", "agent_id", "contacts", "template_id", "message_template", "subject",
        "html_template", "scheduled_at", "timezone", "start_hour", "end_hour", "max_concurrent", "max_retries",
        "retry_interval", "from_number", *(f"voice_{k}" for k in VOICE), *(f"recurrence_{k}" for k in RECURRENCE),
        *(f"breaker_{k}" for k in BREAKER), "breaker_enabled",
    )  # fmt: skip


def contact_request(form: Form) -> dict[str, Any]:
    """A contact form as the body of `POST /contacts` or `PATCH /contacts/{id}` (an emptied field
    cleared; metadata as `key: value` lines; opt-outs per channel)."""
    data: dict[str, Any] = {
        name: _text(form, name) for name in ("first_name", "last_name", "email", "phone", "company", "timezone")
    }
    data["country"] = _text(form, "country")
    metadata: dict[str, Any] = {}
    for line in (_text(form, "metadata") or "").splitlines():
        key, sep, value = line.partition(":")
        if key.strip():
            metadata[key.strip()] = value.strip() if sep else ""
    data["metadata"] = metadata
    data["opted_out"] = {channel: form.get(f"opted_out_{channel}") == "on" for channel in ("sms", "email", "voice")}
    return data


def metadata_text(metadata: Mapping[str, Any] | None) -> str:
    """Metadata as `key: value` lines."""
    return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in (metadata or {}).items())


def agent_request(form: Form) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """An agent form as the body of `POST /agents` (settings as JSON); the form's own errors."""
    data: dict[str, Any] = {
        "name": _text(form, "name"),
        "instructions": _text(form, "instructions") or "",
        "opening_message": _text(form, "opening_message") or "",
        "mode": _text(form, "mode") or "rules",
    }
    raw = _text(form, "settings")
    errors: dict[str, list[str]] = {}
    try:
        data["settings"] = json.loads(raw) if raw else {}
    except ValueError as exc:
        errors["settings"] = [f"not valid JSON: {exc}"]
    except RecursionError:
        errors["settings"] = ["nests too deeply"]
    if not isinstance(data.get("settings", {}), dict):
        errors["settings"] = ['must be a JSON object, e.g. {"rules": [...]}']
    return data, errors


def members(raw: str | None) -> dict[str, list[str]]:
    """Contacts typed one a line as the body of a group's members request (ids, phones, emails)."""
    found: dict[str, list[str]] = {"contact_ids": [], "phones": [], "emails": []}
    for item in addresses(raw):
        key = "emails" if "@" in item else "contact_ids" if item.startswith("ct_") else "phones"
        found[key].append(item)
    return found
