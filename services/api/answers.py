"""The JSON schemas of the API's answers (2xx bodies), as the handlers' `*_body` functions build
them; `/openapi.json` gives each operation its own (`tests/e2e/test_openapi.py` checks real
answers against them, and the fuzzing run every answer it gets)."""

from __future__ import annotations

from typing import Any, get_args

from shared.domain.campaign import Status
from shared.domain.contacts import CHANNELS
from shared.domain.deliveries import STATES

Schema = dict[str, Any]

_STR: Schema = {"type": "string"}
_TEXT: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_BOOL: Schema = {"type": "boolean"}
_OBJECT: Schema = {"type": "object"}
_STRINGS: Schema = {"type": "array", "items": _STR}
#: A time as the API writes it: UTC to the second, `2026-03-10T09:00:00Z`.
_TIME: Schema = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
#: An instant in UTC, or a wall-clock time without zone (`2026-03-10T09:00:00`) read in each
#: contact's zone (`contact_local`).
_INSTANT_OR_WALL: Schema = {
    "type": ["string", "null"],
    "description": "An instant in UTC (`…Z`), or a wall-clock time without zone read in each contact's own.",
}
#: An amount as the API writes it, a string with four decimals (`"0.0079"`).
_AMOUNT: Schema = {"type": "string", "description": 'A decimal amount, four decimals (`"0.0079"`).'}
_CHANNEL: Schema = {"type": "string", "enum": list(CHANNELS)}


def _object(required: tuple[str, ...] | None = None, /, **properties: Schema) -> Schema:
    """An object with these properties, each required unless `required` names the ones that are."""
    return {"type": "object", "required": list(properties if required is None else required), "properties": properties}


def page(item: Schema) -> Schema:
    """A page of a list: `data`, and `next_cursor` (null on the last page)."""
    return _object(
        data={"type": "array", "items": item},
        next_cursor={"type": ["string", "null"], "description": "`?cursor=` for the next page; null on the last."},
    )


#: What a campaign's create and change answer carry besides the campaign.
WARNINGS: Schema = {
    "type": "array",
    "description": (
        "What was accepted but is likely not meant (a `scheduled_at` already past: its contacts are "
        "sent at launch), each naming the field as the request sent it (`schedule` or `scheduled_at`); "
        "empty when all is well."
    ),
    "items": _object(field=_STR, message=_STR),
}
_MISSING_VARIABLES: Schema = {
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 0},
    "description": "When the request launched the campaign: how many contacts lack each template variable.",
}

AGENT: Schema = _object(
    id=_STR,
    name=_STR,
    instructions=_STR,
    opening_message=_STR,
    voice=_OBJECT,
    mode={"type": "string", "enum": ["rules", "webhook", "llm"]},
    settings={**_OBJECT, "description": "Its credentials (`api_key`, `secret`, `token`) read `[set]`."},
    created_at=_TIME,
)

CAMPAIGN: Schema = _object(
    id=_STR,
    name=_STR,
    description=_TEXT,
    status={"type": "string", "enum": list(get_args(Status))},
    type=_CHANNEL,
    channel=_CHANNEL,
    agent_id=_STR,
    total_contacts=_COUNT,
    completed={**_INT, "description": "Deliveries that ended without failing (sent, delivered, skipped…)."},
    failed=_COUNT,
    scheduled_at=_INSTANT_OR_WALL,
    timezone={**_STR, "description": "An IANA zone, or `contact_local`."},
    sending_window={"type": ["object", "null"]},
    recurrence={"type": ["object", "null"]},
    message_template=_TEXT,
    subject=_TEXT,
    html_template={**_TEXT, "description": "An email campaign's HTML part (null when it has none)."},
    template_id=_TEXT,
    contact_group_ids=_STRINGS,
    max_concurrent=_INT,
    reserved=_AMOUNT,
    max_retries=_INT,
    retry_interval={**_INT, "description": "Seconds."},
    from_number=_TEXT,
    voice=_OBJECT,
    status_reason=_TEXT,
    failure_reason={**_TEXT, "description": "Why a `failed` campaign failed."},
    circuit_breaker=_object(
        enabled=_BOOL,
        failure_rate={"type": "number"},
        opt_out_rate={"type": "number"},
        bounce_rate={"type": "number"},
        min_sends=_INT,
    ),
    paused_reason={
        "type": ["object", "null"],
        "description": "Why the circuit breaker paused it: `code`, `value`, `threshold`, `window`.",
    },
    created_at=_TIME,
    updated_at=_TIME,
    launched_at=_TIME_OR_NULL,
    completed_at=_TIME_OR_NULL,
)
#: A campaign as `POST` and `PATCH /campaigns` answer it.
CAMPAIGN_WRITTEN: Schema = {
    **CAMPAIGN,
    "required": [*CAMPAIGN["required"], "warnings"],
    "properties": {**CAMPAIGN["properties"], "warnings": WARNINGS, "missing_variables": _MISSING_VARIABLES},
}
#: A campaign as an action answers it (launch adds `missing_variables`).
CAMPAIGN_ACTED: Schema = {**CAMPAIGN, "properties": {**CAMPAIGN["properties"], "missing_variables": _MISSING_VARIABLES}}

#: A campaign's (or one run's) results: counts, and each figure for people beside its twin for machines.
RESULTS: Schema = {
    "type": "object",
    "required": [
        "campaign_id",
        "status",
        "reply_rate",
        "reply_rate_value",
        "average_response_time",
        "average_response_time_seconds",
    ],
    "properties": {
        "campaign_id": _STR,
        "status": {**_STR, "description": "The campaign's status (with `?run=N`, the run's is `run_status`)."},
        **{
            name: _COUNT
            for name in ("total_contacts", "sent", "delivered", "replied", "failed", "pending", "skipped", "cancelled")
        },
        "undelivered": {**_COUNT, "description": "Email bounces and carrier failures."},
        "reply_rate": {"type": "string", "description": 'Replies per delivered message, as `"29.3%"`.'},
        "reply_rate_value": {"type": "number", "minimum": 0, "maximum": 1, "description": "`reply_rate` from 0 to 1."},
        "average_response_time": {"type": ["string", "null"], "description": 'As `"4m 23s"`; null before any reply.'},
        "average_response_time_seconds": {
            "type": ["number", "null"],
            "description": "`average_response_time` in seconds; null before any reply.",
        },
        "run": {**_INT, "description": "With `?run=N`: N."},
        "run_status": {"type": "string", "description": "With `?run=N`: the run's status, as `/runs` reads it."},
    },
}
_RUN_STATUS: Schema = {"type": "string", "enum": ["pending", "planning", "planned", "completed", "cancelled"]}
#: A recurring campaign's runs, a page of them, each with its own results.
RUNS: Schema = page(
    _object(
        run=_INT,
        id=_STR,
        status=_RUN_STATUS,
        occurs_at=_INSTANT_OR_WALL,
        completed_at=_TIME_OR_NULL,
        results=RESULTS,
    )
)
DELIVERY: Schema = _object(
    id=_STR,
    run=_INT,
    contact_id=_STR,
    to=_STR,
    state={"type": "string", "enum": list(STATES)},
    send_at=_TIME,
    plan_reason={"type": ["object", "null"], "description": "How its send time was chosen."},
    attempts=_COUNT,
    provider_id=_TEXT,
    provider_status=_TEXT,
    answered_by=_TEXT,
    cost={
        "type": ["string", "null"],
        "description": 'What the send cost, four decimals (`"0.0079"`), as the CSV export says; null until charged.',
    },
    message=_TEXT,
    error=_TEXT,
    queued_at=_TIME_OR_NULL,
    sent_at=_TIME_OR_NULL,
    delivered_at=_TIME_OR_NULL,
    replied_at=_TIME_OR_NULL,
    failed_at=_TIME_OR_NULL,
)
DRY_RUN: Schema = _object(
    campaign_id=_STR,
    status=_STR,
    total_contacts=_COUNT,
    send_now=_COUNT,
    waiting=_object(count=_COUNT, first_at=_TIME_OR_NULL, last_at=_TIME_OR_NULL),
    skipped=_object(total=_COUNT, opted_out=_COUNT, no_address=_COUNT, no_allowed_time=_COUNT),
    missing_variables={"type": "object", "additionalProperties": _COUNT},
    cost=_object(estimate=_AMOUNT, balance=_AMOUNT, sufficient=_BOOL),
    samples={
        "type": "array",
        "items": _object(
            contact_id=_STR,
            to=_TEXT,
            send_at=_TIME,
            message=_TEXT,
            error=_TEXT,
            plan_reason={"type": ["object", "null"]},
        ),
    },
)

TEMPLATE: Schema = _object(
    id=_STR,
    name=_STR,
    channel=_CHANNEL,
    body=_TEXT,
    subject=_TEXT,
    html=_TEXT,
    created_at=_TIME,
    updated_at=_TIME,
)
PREVIEW: Schema = _object(
    body={
        **_TEXT,
        "description": (
            "The part rendered (a variable the contact lacks shown as written: `{{agent_name}}`, or the "
            "part null if even so it cannot be); null if the template has none."
        ),
    },
    subject=_TEXT,
    html=_TEXT,
    missing_variables={**_STRINGS, "description": "Each variable the contact lacks: its part shows it as written."},
    segments={
        "type": ["integer", "null"],
        "minimum": 0,
        "description": (
            "An SMS template's body, rendered whole: the segments it takes, as carriers count them; else null."
        ),
    },
    error={
        **_TEXT,
        "description": "An SMS template's body, rendered whole: why it cannot go (over 1,600 characters), else null.",
    },
)

CONTACT: Schema = _object(
    id=_STR,
    first_name=_TEXT,
    last_name=_TEXT,
    email=_TEXT,
    phone=_TEXT,
    company=_TEXT,
    timezone=_TEXT,
    metadata={**_OBJECT, "description": "Its other fields: its own template variables."},
    opted_out=_object(**dict.fromkeys(CHANNELS, _BOOL)),
    created_at=_TIME,
    updated_at=_TIME,
)
IMPORTED: Schema = _object(
    rows=_COUNT,
    created=_COUNT,
    updated=_COUNT,
    duplicates=_COUNT,
    rejected=_COUNT,
    errors={"type": "array", "items": _object(line=_INT, field=_STR, reason=_STR), "description": "The first 1,000."},
    errors_not_listed=_COUNT,
)
GROUP: Schema = _object(id=_STR, name=_STR, member_count=_COUNT, created_at=_TIME)
_FIELD_ERRORS: Schema = {"type": "array", "items": _object(field=_STR, reason=_STR)}
#: What adding (`added`) or removing (`removed`) members did.
MEMBERS_CHANGED: Schema = _object(
    ("group_id", "matched", "not_found", "invalid", "member_count"),
    group_id=_STR,
    matched=_COUNT,
    added=_COUNT,
    removed=_COUNT,
    not_found=_object(contact_ids=_STRINGS, phones=_STRINGS, emails=_STRINGS),
    invalid=_FIELD_ERRORS,
    member_count=_COUNT,
)

API_KEY: Schema = _object(
    prefix=_STR,
    created_at=_TIME,
    revoked_at=_TIME_OR_NULL,
    current={**_BOOL, "description": "Whether it is the key of this request."},
)
NEW_API_KEY: Schema = _object(api_key={**_STR, "description": "Shown this once."}, prefix=_STR)
REVOKED_API_KEY: Schema = _object(prefix=_STR, created_at=_TIME, revoked_at=_TIME)
ACCOUNT: Schema = _object(
    id=_STR,
    name=_STR,
    balance=_AMOUNT,
    reserved={**_AMOUNT, "description": "What launched campaigns hold back from the balance."},
    prices=_object(sms=_AMOUNT, email=_AMOUNT, voice_minute=_AMOUNT),
    default_timezone=_STR,
    quiet_hours=_BOOL,
    created_at=_TIME,
)
SENDER: Schema = _object(
    ("kind", "address", "state", "verified", "verified_at", "created_at", "max_per_second"),
    kind={"type": "string", "enum": ["phone", "email"]},
    address=_STR,
    state={"type": "string", "enum": ["verified", "pending"]},
    verified=_BOOL,
    verified_at=_TIME_OR_NULL,
    created_at=_TIME,
    max_per_second={"type": ["number", "null"], "description": "Null: the default for its kind of number."},
    verification={**_STR, "description": "A pending sender's: what verifies it."},
)

WEBHOOK_ENDPOINT: Schema = _object(
    id=_STR,
    url=_STR,
    events=_STRINGS,
    enabled=_BOOL,
    disabled_reason=_TEXT,
    failing_since=_TIME_OR_NULL,
    created_at=_TIME,
    updated_at=_TIME,
)
NEW_WEBHOOK_ENDPOINT: Schema = {
    **WEBHOOK_ENDPOINT,
    "required": [*WEBHOOK_ENDPOINT["required"], "secret"],
    "properties": {**WEBHOOK_ENDPOINT["properties"], "secret": {**_STR, "description": "`whsec_…`, shown this once."}},
}
WEBHOOK_ATTEMPT: Schema = _object(
    event_id=_STR,
    event=_STR,
    status_code={"type": ["integer", "null"]},
    error=_TEXT,
    duration_ms={"type": ["integer", "null"]},
    at=_TIME,
)
