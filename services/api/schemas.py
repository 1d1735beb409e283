"""Request models accepting every shape of the seeds, and their normalisation into one spec.

A campaign's settings may come at the top level or inside `config` (top level wins); `type` and
`channel`, `schedule` and `scheduled_at`, `contact_group_id` and `contact_group_ids`,
`from_number` and `caller_id` are synonyms (both sent: `services/api/synonyms.py`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from services.api.synonyms import HAND_CHECKED, models_in, one_name_each
from shared.domain.calls import MACHINE_DETECTION
from shared.domain.contacts import e164, opt_out_key_errors
from shared.domain.phone import InvalidPhone, to_e164
from shared.domain.recurrence import Recurrence
from shared.domain.sms import template_too_long
from shared.domain.templating import TemplateError, check_budget
from shared.domain.times import iso
from shared.domain.windows import SendingWindow, parse_weekday
from shared.domain.zones import is_valid_zone
from shared.errors import Invalid

Channel = Literal["sms", "email", "voice"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600}
_MAX_RETRY_INTERVAL = 7 * 86400
#: A call's `call_duration_limit` bounds, in seconds (10 s to 4 h).
_MIN_CALL_LIMIT, _MAX_CALL_LIMIT = 10, 14400
CALL_LIMIT_REASON = "must be a whole number of seconds, 10 to 14400 (or a duration such as '90s', '5m', '1h')"


def _document_synonyms(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """List each field's other accepted names (`type` for `channel`, …) in the JSON schema too."""
    properties = schema.get("properties", {})
    for name, info in model.model_fields.items():
        if isinstance(info.validation_alias, AliasChoices) and name in properties:
            for choice in info.validation_alias.choices:
                if isinstance(choice, str) and choice not in properties:
                    properties[choice] = {**properties[name], "description": f"Synonym of `{name}`."}


#: A name people read (a campaign's, an agent's, a template's, a group's): kept without the spaces
#: around it, and never only spaces (a name of spaces showed as a link nobody could click).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Strict(BaseModel):
    """A request object whose unknown keys are a 422 naming each (the seeds' synonyms are known)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=_document_synonyms)


class SendingWindowIn(_Strict):
    """`start_hour`–`end_hour` (end exclusive) and `excluded_days`, in the contact's local time."""  # noqa: RUF002 (the OpenAPI description)

    start_hour: StrictInt | None = Field(default=None, ge=0, le=23)
    end_hour: StrictInt | None = Field(default=None, ge=0, le=24)
    excluded_days: list[str] = Field(default_factory=list)

    @field_validator("excluded_days")
    @classmethod
    def _day_names(cls, days: list[str]) -> list[str]:
        """Day names checked here, beside the hours (so that one answer names both)."""
        for day in days:
            try:
                parse_weekday(day, "excluded_days")
            except ValueError as exc:
                raise ValueError(str(exc).removeprefix("excluded_days: ")) from None
        return days


class ContactIn(BaseModel):
    """An inline contact: a phone number (or email) with optional fields; other keys are metadata,
    but for those naming an opt-out (`opted_out`…: refused, see `_recipients`)."""

    model_config = ConfigDict(extra="allow")

    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    timezone: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CircuitBreakerIn(_Strict):
    """A campaign's circuit breaker thresholds (rates from 0 to 1); those left out keep the defaults."""

    failure_rate: StrictFloat | None = Field(default=None, ge=0, le=1, description="Failed / finished sends")
    opt_out_rate: StrictFloat | None = Field(default=None, ge=0, le=1, description="Opt-outs / sends accepted")
    bounce_rate: StrictFloat | None = Field(default=None, ge=0, le=1, description="Undelivered / sends accepted")
    min_sends: StrictInt | None = Field(default=None, ge=1, le=1_000_000, description="Finished sends before it looks")
    enabled: StrictBool | None = None


class CampaignSettings(_Strict):
    """Every campaign setting; used at the top level and as `config` (`CampaignConfig`)."""

    description: str | None = None
    channel: Channel | None = Field(default=None, validation_alias=AliasChoices("channel", "type"))
    contacts: list[str | ContactIn] | None = None
    contact_group_id: str | StrictInt | None = None
    contact_group_ids: list[str | StrictInt] | None = None
    message_template: str | None = Field(
        default=None, validation_alias=AliasChoices("message_template", "message", "body")
    )
    template_id: str | StrictInt | None = None
    subject: str | None = None
    html_template: str | None = Field(default=None, validation_alias=AliasChoices("html_template", "html", "html_body"))
    scheduled_at: str | None = Field(default=None, validation_alias=AliasChoices("scheduled_at", "schedule"))
    timezone: str | None = None
    sending_window: SendingWindowIn | None = None
    recurrence: dict[str, Any] | str | None = None
    max_concurrent: StrictInt | None = Field(default=None, ge=1, le=1000)
    max_retries: StrictInt | None = Field(default=None, ge=0, le=20)
    retry_interval: StrictInt | str | None = None
    from_number: str | None = Field(
        default=None, validation_alias=AliasChoices("from_number", "caller_id", "from", "from_email")
    )
    opening_message: str | None = None
    instructions: str | None = None
    call_duration_limit: StrictInt | str | None = Field(
        default=None,
        description="Voice only: a call's longest duration, 10 s to 4 h: seconds (`120`) or a duration "
        'as `retry_interval` takes (`"90s"`, `"5m"`, `"1h"`).',
        validation_alias=AliasChoices("call_duration_limit", "max_duration", "max_call_duration", "time_limit"),
    )
    machine_detection: Literal["off", "hangup", "voicemail"] | None = Field(
        default=None,
        description="Voice only: answering machine detection. `off` (default): every answer gets the "
        "conversation; `hangup`: a machine (or fax) answering is hung up on at once; `voicemail`: a "
        "machine answering is left `voicemail_message` after the beep, then the call hangs up.",
    )
    voicemail_message: str | None = Field(
        default=None,
        description="Voice only: the message left on an answering machine (a template rendered per "
        "contact, as `message_template`); required when `machine_detection` is `voicemail`.",
    )
    voice: dict[str, Any] | None = Field(
        default=None,
        description="Voice only: the call settings above as an object (the top level wins), and the "
        "`<Say>` `voice` and `language`; any other key is a 422 naming it.",
    )
    circuit_breaker: CircuitBreakerIn | None = Field(
        default=None,
        description="Pause the campaign by itself when, over its sends finished since launch or its last "
        "resume (once at least `min_sends` have), a rate goes above its threshold. On by default with "
        "the platform's thresholds; `false` turns it off (`true`: the defaults); an object sets some "
        "thresholds (the rest keep the defaults).",
    )

    #: The name each field with synonyms was given under (`from_number`: `caller_id`), so that an
    #: error names what the request sent.
    _given_as: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_names(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Note which of its names each field with synonyms was given under."""
        settings = handler(data)
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                if isinstance(info.validation_alias, AliasChoices):
                    keys = [key for key in data if key in info.validation_alias.choices]
                    if keys:
                        settings._given_as[name] = keys[0]
        return settings

    def given_as(self, name: str) -> str:
        """The name field `name` was given under (itself when not given, or given as itself)."""
        return self._given_as.get(name, name)

    def named_as(self, *others: CampaignSettings | None) -> Self:
        """These settings, their fields named as `others` were given them (later ones win)."""
        for other in others:
            if other is not None:
                self._given_as.update(other._given_as)
        return self

    @field_validator("circuit_breaker", mode="before")
    @classmethod
    def _breaker_switch(cls, value: Any) -> Any:
        """`true` is the defaults, `false` turns the breaker off."""
        if value is True:
            return {}
        if value is False:
            return {"enabled": False}
        return value


class CampaignCreate(CampaignSettings):
    """`POST /campaigns`. Unknown keys are a 422 naming each; the answer (201) carries `warnings`,
    `[{"field", "message"}]`, about what was accepted but likely not meant (a `scheduled_at` already
    past: the campaign sends at launch)."""

    name: Name
    agent_id: str = Field(min_length=1)
    config: CampaignSettings | None = None
    status: Literal["draft", "scheduled"] | None = None


class CampaignPatch(CampaignSettings):
    """`PATCH /campaigns/{id}` (a draft): any field of `POST /campaigns` but `status`; the fields
    given replace the campaign's, the rest stay. `contacts` replaces its inline contacts, and
    `contact_group_id`/`contact_group_ids` its groups."""

    name: Name | None = None
    agent_id: str | None = Field(default=None, min_length=1)
    config: CampaignSettings | None = None


def patched(current: dict[str, Any], patch: CampaignPatch) -> tuple[CampaignCreate, bool]:
    """The campaign's request after `patch`: its `current` settings (field names as in
    CampaignCreate, `contacts` left out) with the patch's given fields over them; and whether the
    patch replaces the inline contacts. A new template_id drops the texts the old one filled in."""
    given: dict[str, Any] = {}
    if patch.config is not None:
        given.update({k: getattr(patch.config, k) for k in patch.config.model_fields_set})
    given.update({k: getattr(patch, k) for k in patch.model_fields_set if k != "config"})
    merged = dict(current)
    if "template_id" in given:
        for key in ("message_template", "subject", "html_template"):
            merged.pop(key, None)
    if "contact_group_id" in given or "contact_group_ids" in given:
        merged.pop("contact_group_ids", None)
    merged.update(given)
    return CampaignCreate.model_validate(merged).named_as(patch.config, patch), "contacts" in given


class AgentCreate(_Strict):
    """`POST /agents`: how the agent talks and how it answers (`rules`, `webhook`, `llm`)."""

    name: Name
    instructions: str = ""
    opening_message: str = ""
    voice: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["rules", "webhook", "llm"] = "rules"
    settings: dict[str, Any] = Field(default_factory=dict)


class AgentPatch(_Strict):
    """`PATCH /agents/{id}`: any field of an agent."""

    name: Name | None = None
    instructions: str | None = None
    opening_message: str | None = None
    voice: dict[str, Any] | None = None
    mode: Literal["rules", "webhook", "llm"] | None = None
    settings: dict[str, Any] | None = None


def template_errors(name: str, source: str | None, html: bool = False, sms: bool = False) -> list[dict[str, str]]:
    """A template field's syntax error, with its line, or the budget it blows whatever the contact
    (none when it compiles and stays within it, or is empty); with `sms`, the text of an SMS,
    also its own text when that is already longer than an SMS holds. It may take the render
    budget's time: call it off the event loop."""
    if not source:
        return []
    try:
        written = check_budget(source, html)
    except TemplateError as exc:
        return [{"field": name, "reason": str(exc)}]
    too_long = template_too_long(written) if sms and written is not None else None
    return [{"field": name, "reason": too_long}] if too_long else []


def agent_settings_errors(mode: str, settings: dict[str, Any]) -> list[dict[str, str]]:
    """What an answering mode needs in `settings` and lacks."""
    needs = {"rules": (), "webhook": ("url",), "llm": ("base_url", "model")}[mode]
    errors = [
        {"field": f"settings.{key}", "reason": f"required when mode is {mode!r}"}
        for key in needs
        if not settings.get(key)
    ]
    for key in ("url", "base_url"):
        value = settings.get(key)
        if key in needs and value and not str(value).startswith(("http://", "https://")):
            errors.append({"field": f"settings.{key}", "reason": "must be an http(s) URL"})
    rules = settings.get("rules")
    if (
        mode == "rules"
        and rules is not None
        and (not isinstance(rules, list) or not all(isinstance(r, dict) and r.get("keyword") for r in rules))
    ):
        errors.append({"field": "settings.rules", "reason": 'a list of {"keyword", "reply"}'})
    return errors


def reply_template_errors(mode: str, settings: dict[str, Any]) -> list[dict[str, str]]:
    """A rules agent's replies are templates (rendered for the contact as a campaign's message is):
    each one's syntax error or blown budget, named by its place in `settings`. Off the event loop."""
    if mode != "rules":
        return []
    rules = settings.get("rules")
    replies = [(f"settings.rules[{i}].reply", r.get("reply")) for i, r in enumerate(rules or []) if isinstance(r, dict)]
    replies.append(("settings.default_reply", settings.get("default_reply")))
    return [e for name, reply in replies if isinstance(reply, str) for e in template_errors(name, reply)]


@dataclass
class Recipient:
    """A normalised inline contact."""

    phone: str | None
    email: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class CampaignSpec:
    """A campaign request, validated and normalised; what the database stores."""

    name: str
    agent_id: str
    channel: Channel
    description: str | None
    recipients: list[Recipient]
    group_ids: list[str]
    message_template: str | None
    subject: str | None
    html_template: str | None
    template_id: str | None
    scheduled_at: datetime | None  # an instant (offset given)
    scheduled_wall: datetime | None  # a wall-clock time, read in the campaign's or contact's zone
    timezone: str
    sending_window: dict[str, Any] | None
    recurrence: dict[str, Any] | None
    max_concurrent: int
    max_retries: int
    retry_interval: int
    from_number: str | None
    voice: dict[str, Any]
    config: dict[str, Any]
    launch: bool
    #: The name the request gave its groups under (an unknown one is reported by that name).
    group_field: str = "contact_group_ids"
    #: The name the request gave `from_number` under (`caller_id`, …): its errors name that.
    from_field: str = "from_number"
    #: What is accepted but likely not meant, as `[{"field", "message"}]` (the answer's `warnings`).
    warnings: list[dict[str, str]] = field(default_factory=list)
    #: The circuit breaker's thresholds as given (None: the defaults; `{"enabled": false}`: off).
    circuit_breaker: dict[str, Any] | None = None


def pydantic_details(exc: ValidationError, model: type[BaseModel] | None = None) -> list[dict[str, str]]:
    """pydantic's errors as `[{"field": "contacts[1]", "reason": …}]`; an unknown key says
    "unknown field", with the known name it is closest to when `model` is given."""
    details = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part not in ("str", "ContactIn", "int") and not str(part).startswith("function"):
                path += ("." if path else "") + str(part)
        reason = plain_reason(error)
        if error["type"] == "extra_forbidden":
            reason = unknown_field_reason(str(error["loc"][-1]), known_names(model) if model else set())
        details.append({"field": path or "body", "reason": reason})
    return details


#: pydantic's error types that say the value is not of its kind, in the API's words.
_KIND_REASONS: dict[str, str] = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float", "int_parsing_size"), "must be a whole number"),
    **dict.fromkeys(
        ("float_type", "float_parsing", "decimal_type", "decimal_parsing", "finite_number"), "must be a number"
    ),
    **dict.fromkeys(("bool_type", "bool_parsing"), "must be true or false"),
    **dict.fromkeys(("string_type", "string_sub_type"), "must be a string"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "must be an object"),
    **dict.fromkeys(("list_type", "tuple_type", "set_type"), "must be a list"),
    "missing": "required",
}


def plain_reason(error: Any) -> str:
    """One of pydantic's errors in the API's plain words (`must be at most 23`, `must not be
    empty`, `required`…), from its type and `ctx`; our validators' own words as they are, and
    pydantic's message for a type not listed here."""
    kind, ctx = str(error["type"]), error.get("ctx") or {}
    if kind in _KIND_REASONS:
        return _KIND_REASONS[kind]
    bounds = {"less_than_equal": ("le", "at most"), "less_than": ("lt", "less than"),
              "greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than")}  # fmt: skip
    if kind in bounds and bounds[kind][0] in ctx:
        key, words = bounds[kind]
        return f"must be {words} {ctx[key]}"
    if kind in ("string_too_short", "too_short") and "min_length" in ctx:
        least = int(ctx["min_length"])
        unit = "character" if kind == "string_too_short" else "item"
        return "must not be empty" if least == 1 else f"must be at least {least} {unit}s"
    if kind in ("string_too_long", "too_long") and "max_length" in ctx:
        most = int(ctx["max_length"])
        unit = "character" if kind == "string_too_long" else "item"
        return f"must be at most {most} {unit}{'' if most == 1 else 's'}"
    if kind in ("literal_error", "enum") and "expected" in ctx:
        choices = re.findall(r"'([^']*)'", str(ctx["expected"]))
        return f"must be one of {', '.join(choices) if choices else ctx['expected']}"
    return str(error["msg"]).removeprefix("Value error, ")  # (our validators' own words)


def known_names(model: type[BaseModel]) -> set[str]:
    """Every key `model` and the objects inside it accept: field names and their synonyms."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[Any] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, info in current.model_fields.items():
            names.add(name)
            if isinstance(info.validation_alias, AliasChoices):
                names.update(c for c in info.validation_alias.choices if isinstance(c, str))
            pending.extend(models_in(info.annotation))
    return names


def unknown_field_reason(name: str, known: set[str]) -> str:
    """ "unknown field", and the known name meant when one is close (`scheduledAt` → `scheduled_at`)."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("-", "_").lower()
    guess = (
        snake if snake in known else next(iter(difflib.get_close_matches(snake, sorted(known), n=1, cutoff=0.75)), None)
    )
    return f"unknown field (did you mean `{guess}`?)" if guess else "unknown field"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, channel: str | None = None) -> M:
    """`data` (a decoded JSON body, or a dashboard form made into one) validated as `model`: 422
    listing every bad field, in the same words for the API and the dashboard. `channel`: the
    campaign's, for a change (CampaignPatch) that leaves it (its contacts and texts are checked
    for it)."""
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", details=[{"field": "body", "reason": "not an object"}])
    unstorable = text_errors(data)
    if unstorable:
        raise Invalid("text must be valid Unicode, without NUL characters", details=unstorable)
    data, details = one_name_each(model, data, hand_checked=issubclass(model, CampaignSettings))
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        details += pydantic_details(exc, model)
    else:
        if not details:
            return checked
    if issubclass(model, CampaignCreate):
        details += _campaign_errors_besides(data, details)
    elif issubclass(model, CampaignPatch):
        # a change is checked against the campaign later: only what it says of the fields it gives
        given, checked_as = _given(data), data
        if not given & {"channel", "config.channel"} and channel is not None:
            checked_as = {**data, "channel": channel}  # the campaign's, which the change leaves
        elif not given & {"channel", "config.channel"}:
            given -= {f for f in given if f.removeprefix("config.") in _BY_CHANNEL}
        details += [d for d in _campaign_errors_besides(checked_as, details) if _about(d["field"], given)]
    raise Invalid("the request is not valid", details=details)


def _campaign_errors_besides(data: dict[str, Any], reported: list[dict[str, str]]) -> list[dict[str, str]]:
    """What a create's checks beyond types (phones, zones, templates, schedule…) find in the fields
    whose types were right, so that one answer lists every bad field."""
    bad = {_top(d["field"]) for d in reported}
    cleaned = {k: v for k, v in data.items() if k not in bad}
    if isinstance(cleaned.get("config"), dict):
        cleaned["config"] = {k: v for k, v in cleaned["config"].items() if f"config.{k}" not in bad}
    cleaned.setdefault("name", "-")
    cleaned.setdefault("agent_id", "-")
    try:
        normalize(CampaignCreate.model_validate(cleaned), "UTC")
    except ValidationError:
        return []
    except Invalid as exc:
        seen = {d["field"] for d in reported}
        return [d for d in exc.details if d["field"] not in seen and _top(d["field"]) not in bad]
    return []


#: The fields whose checks depend on the campaign's channel (not known from a change that leaves it).
_BY_CHANNEL = frozenset(
    {"contacts", "from_number", "message_template", "subject", "machine_detection", "voicemail_message", "voice"}
)


def _synonyms() -> dict[str, str]:
    """Each name a campaign setting takes (`schedule`, `caller_id`, …) to the setting's own."""
    return {
        choice: name
        for name, info in CampaignSettings.model_fields.items()
        if isinstance(info.validation_alias, AliasChoices)
        for choice in info.validation_alias.choices
        if isinstance(choice, str)
    }


def _given(data: dict[str, Any]) -> set[str]:
    """The fields a request gives, by their names (a synonym as the name it stands for), those in
    `config` as `config.<name>`."""
    names = _synonyms()
    given = {names.get(key, key) for key in data}
    if isinstance(data.get("config"), dict):
        given |= {"config." + names.get(key, key) for key in data["config"]}
    return given


def _about(path: str, given: set[str]) -> bool:
    """Whether an error at `path` is about a field of `given` (an error naming a setting by the name
    it was sent under, `schedule`, is about it wherever it was sent: at the top level or in `config`)."""
    top = _top(path)
    name = _synonyms().get(top, top)
    return name in given or f"config.{name}" in given


def _top(path: str) -> str:
    """`contacts[2].phone` → `contacts`; `config.timezone` → `config.timezone`."""
    head, _, rest = path.partition(".")
    head = head.split("[")[0]
    if head == "config" and rest:
        return "config." + rest.split(".")[0].split("[")[0]
    return head


#: The deepest nesting of arrays and objects a request body may have (the body itself is level 1).
MAX_DEPTH = 32
#: A lone surrogate: what a JSON `\ud800` escape without its pair decodes to (not Unicode text).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_flaw(text: str) -> str | None:
    """Why `text` cannot be stored (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains \\u0000"
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return f"is not valid Unicode text (a lone surrogate, \\u{ord(found[0]):04x})" if found else None


def text_errors(value: Any, depth: int = 1) -> list[dict[str, str]]:
    """Each string (or key) of a decoded body that PostgreSQL cannot store (a NUL; a lone
    surrogate, which is not Unicode), as `[{"field": "contacts[1].first_name", "reason"}]`.
    Invalid when it nests deeper than MAX_DEPTH (`value` sits at level `depth`). Walked with a
    stack of its own: no nesting makes it recurse."""
    errors: list[dict[str, str]] = []
    # (value, its level, its parent's entry, its key or index): a path is spelt only when reported
    stack: list[tuple[Any, int, Any, str | int | None]] = []
    if isinstance(value, dict | list):
        stack.append((value, depth, None, None))

    def spelt(entry: Any) -> str:
        parts: list[str] = []
        while entry is not None and entry[3] is not None:
            key = entry[3]
            parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
            entry = entry[2]
        return "".join(reversed(parts)).removeprefix(".") or "body"

    while stack:
        entry = stack.pop()
        item, level, _, _ = entry
        if level > MAX_DEPTH:
            raise too_deep()
        for key, inner in item.items() if isinstance(item, dict) else enumerate(item):
            # strings are checked here, containers pushed; plain ASCII without a NUL (most text) costs no call
            if type(inner) is str:
                if (not inner.isascii() or "\x00" in inner) and (flaw := _text_flaw(inner)):
                    errors.append({"field": spelt((None, 0, entry, key)), "reason": flaw})
            elif isinstance(inner, dict | list):
                stack.append((inner, level + 1, entry, key))
            if type(key) is str and (not key.isascii() or "\x00" in key) and (flaw := _text_flaw(key)):
                errors.append({"field": spelt((None, 0, entry, key)), "reason": f"its name {flaw}"})
    return errors


def too_deep() -> Invalid:
    """The error for a body nested deeper than MAX_DEPTH (or deeper than Python's decoder goes)."""
    return Invalid(
        "the body nests too deeply",
        details=[{"field": "body", "reason": f"nests arrays and objects more than {MAX_DEPTH} levels deep"}],
    )


def _seconds(value: int | str) -> int:
    """Seconds from `300`, `"300"`, `"30s"`, `"5m"` or `"1h"`; ValueError otherwise."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration (e.g. 300, '30s', '5m', '1h')")
    return int(match[1]) * _UNITS[(match[2] or "s")[0].lower()]


def parse_duration(value: int | str) -> int:
    """A `retry_interval`: seconds from `300`, `"300"`, `"30s"`, `"5m"` or `"1h"`, up to 7 days;
    ValueError otherwise."""
    seconds = _seconds(value)
    if not 0 <= seconds <= _MAX_RETRY_INTERVAL:
        raise ValueError(f"must be between 0 and {_MAX_RETRY_INTERVAL} seconds (7 days)")
    return seconds


def parse_call_duration_limit(value: Any) -> int:
    """A `call_duration_limit`: seconds, in the forms `parse_duration` takes (`120`, `"90s"`,
    `"5m"`, `"1h"`), 10 to 14400; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(CALL_LIMIT_REASON)
    seconds = _seconds(value)
    if not _MIN_CALL_LIMIT <= seconds <= _MAX_CALL_LIMIT:
        raise ValueError(CALL_LIMIT_REASON)
    return seconds


def parse_when(value: str) -> datetime | None:
    """An ISO 8601 date-time (aware or naive), or None for `"now"`/`"immediate"`."""
    if value.strip().lower() in ("", "now", "immediate", "immediately"):
        return None
    return datetime.fromisoformat(value.strip())


#: The instants a schedule may name, from the first (included) to the last (excluded), in UTC:
#: every real schedule fits, and every time planning derives from one (a contact's zone, a window
#: or quiet hours ahead, a recurrence's runs for centuries) stays within the years Python holds.
SCHEDULE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
SCHEDULE_UNTIL = datetime(9000, 1, 1, tzinfo=UTC)
#: The furthest any zone's clock runs behind UTC (Etc/GMT+12; Baker Island).
_FURTHEST_BEHIND = timedelta(hours=12)


def schedule_range_error(when: datetime, timezone: str) -> str | None:
    """Why a schedule falls outside the years 2000 to 8999 once in UTC (None when it does not): an
    offset's instant; a wall-clock time read in the campaign's zone, or in every zone (`contact_local`)."""
    reason = "a schedule must fall between 2000-01-01 and 8999-12-31 once in UTC"
    if when.tzinfo is None:
        local = timezone == "contact_local"
        reason += " (in every time zone, for contact_local)" if local else f" (read in {timezone})"
    if not SCHEDULE_FROM.year - 1 <= when.year <= SCHEDULE_UNTIL.year:  # (nearer the calendar's ends, no conversion)
        return reason
    if when.tzinfo is not None:
        instants = [when]
    elif timezone == "contact_local":
        wall = when.replace(tzinfo=UTC)
        instants = [wall - _FURTHEST_AHEAD, wall + _FURTHEST_BEHIND]
    elif is_valid_zone(timezone):
        instants = [when.replace(tzinfo=ZoneInfo(timezone))]
    else:
        return None  # (the zone is named as not one)
    return None if all(SCHEDULE_FROM <= at < SCHEDULE_UNTIL for at in instants) else reason


def given_name(req: CampaignCreate, name: str) -> str:
    """The name the request gave field `name` under (`caller_id` for `from_number`, …), at its
    top level or else in `config`: a field's errors name it so."""
    if name in req.model_fields_set:
        return req.given_as(name)
    if req.config is not None and name in req.config.model_fields_set:
        return req.config.given_as(name)
    return name


def _first_day(at: datetime | None, wall: datetime | None, timezone: str, now: datetime) -> date:
    """The earliest date a campaign's first run can fall on anywhere: a wall-clock schedule's day,
    an instant's (or, at launch, now's) day in the campaign's zone; where each contact reads the
    time in theirs, the day before (the zones west of UTC)."""
    if wall is not None:
        return wall.date()
    instant = at or now
    if timezone != "contact_local" and is_valid_zone(timezone):
        return instant.astimezone(ZoneInfo(timezone)).date()
    return (instant.astimezone(UTC) - timedelta(days=1)).date()


def normalize(req: CampaignCreate, default_timezone: str, now: datetime | None = None) -> CampaignSpec:
    """The request as a CampaignSpec, or Invalid listing every bad field; with warnings about what
    is accepted but likely not meant (a schedule already past, as of `now`). It parses every inline
    contact and trial-renders every text: call it off the event loop (`asyncio.to_thread`)."""
    merged: dict[str, Any] = {}
    if req.config is not None:
        merged.update({k: getattr(req.config, k) for k in req.config.model_fields_set})
    merged.update({k: getattr(req, k) for k in req.model_fields_set if k in CampaignSettings.model_fields})
    errors: list[dict[str, str]] = []

    def bad(field_name: str, reason: str) -> None:
        errors.append({"field": field_name, "reason": reason})

    channel: Channel = merged.get("channel") or "voice"
    recipients = _recipients(merged.get("contacts") or [], channel, bad)
    group_ids = [str(g) for g in (merged.get("contact_group_ids") or [])]
    if merged.get("contact_group_id") is not None:
        group_ids.insert(0, str(merged["contact_group_id"]))
    group_ids = list(dict.fromkeys(group_ids))

    template = merged.get("message_template")
    for key in ("message_template", "subject", "html_template", "opening_message"):
        sms = channel == "sms" and key == "message_template"  # what an SMS campaign sends
        errors.extend(template_errors(key, merged.get(key), html=key == "html_template", sms=sms))
    errors.extend(template_errors("voice.opening_message", (merged.get("voice") or {}).get("opening_message")))
    if not template and merged.get("template_id") is None and channel != "voice":
        bad("message_template", "required for an SMS or email campaign (or give template_id)")
    if channel == "email" and not merged.get("subject") and merged.get("template_id") is None:
        bad("subject", "required for an email campaign")

    timezone = merged.get("timezone") or default_timezone
    if timezone != "contact_local" and not is_valid_zone(timezone):
        bad("timezone", f"{timezone!r} is not an IANA time zone name (or 'contact_local')")
    scheduled_at = scheduled_wall = None
    schedule_field = given_name(req, "scheduled_at")  # `schedule` or `scheduled_at`, as the client sent it
    if merged.get("scheduled_at"):
        try:
            when = parse_when(merged["scheduled_at"])
        except ValueError:
            bad(schedule_field, f"{merged['scheduled_at']!r} is not an ISO 8601 date-time")
        else:
            out_of_range = None if when is None else schedule_range_error(when, timezone)
            if out_of_range is not None:
                bad(schedule_field, f"{merged['scheduled_at']!r}: {out_of_range}")
            elif when is not None and when.tzinfo is not None:
                scheduled_at = when
            else:
                scheduled_wall = when
    window = merged.get("sending_window")
    window_dict = None
    if window is not None:
        window_dict = window.model_dump()
        try:
            SendingWindow.parse(window.start_hour, window.end_hour, window.excluded_days)
        except ValueError as exc:
            bad("sending_window." + str(exc).split(":")[0], str(exc).split(":", 1)[-1].strip())
    recurrence = merged.get("recurrence")
    if isinstance(recurrence, dict):
        errors.extend(unknown_key_errors("recurrence", recurrence, RECURRENCE_KEYS))
    if recurrence is not None:
        try:
            rule = Recurrence.parse(recurrence)
        except ValueError:
            for problem in Recurrence.problems(recurrence):
                name, _, reason = problem.partition(":")
                bad("recurrence." + name.strip() if reason else "recurrence", reason.strip() or problem)
        else:
            recurrence = rule.as_dict()
            first = _first_day(scheduled_at, scheduled_wall, timezone, now or datetime.now(UTC))
            if rule.until is not None and rule.until < first:
                bad("recurrence.until", f"{rule.until} is before the first run ({first}): it would never recur")
    retry_interval = 300
    if merged.get("retry_interval") is not None:
        try:
            retry_interval = parse_duration(merged["retry_interval"])
        except ValueError as exc:
            bad("retry_interval", str(exc))
    from_number = merged.get("from_number")
    from_field = given_name(req, "from_number")
    if from_number and channel != "email":
        try:
            from_number = to_e164(from_number)
        except InvalidPhone as exc:
            bad(from_field, str(exc))
    voice = {_VOICE_SYNONYMS.get(k, k): v for k, v in (merged.get("voice") or {}).items()}
    errors.extend(voice_errors(voice))
    for key in CALL_SETTINGS:
        if merged.get(key) is not None:
            voice[key] = merged[key]
    if voice.get("call_duration_limit") is not None:
        try:  # kept as seconds, whichever form it was given in
            voice["call_duration_limit"] = parse_call_duration_limit(voice["call_duration_limit"])
        except ValueError as exc:
            if merged.get("call_duration_limit") is not None:  # (a `voice` object's is named by voice_errors)
                bad("call_duration_limit", str(exc))
    errors.extend(machine_detection_errors(channel, voice))
    if errors:
        raise Invalid("the campaign is not valid", details=errors)
    warnings = schedule_warnings(scheduled_at, scheduled_wall, timezone, now or datetime.now(UTC), schedule_field)
    breaker = merged.get("circuit_breaker")
    circuit_breaker = breaker.model_dump(exclude_none=True) if breaker is not None else None
    return CampaignSpec(
        name=req.name,
        agent_id=req.agent_id,
        channel=channel,
        description=merged.get("description"),
        recipients=recipients,
        group_ids=group_ids,
        message_template=template,
        subject=merged.get("subject"),
        html_template=merged.get("html_template"),
        template_id=None if merged.get("template_id") is None else str(merged["template_id"]),
        scheduled_at=scheduled_at,
        scheduled_wall=scheduled_wall,
        timezone=timezone,
        sending_window=window_dict,
        recurrence=recurrence,
        max_concurrent=merged.get("max_concurrent") or 1,
        max_retries=2 if merged.get("max_retries") is None else merged["max_retries"],
        retry_interval=retry_interval,
        from_number=from_number,
        voice=voice,
        config=req.config.model_dump(mode="json", exclude_unset=True) if req.config else {},
        launch=req.status == "scheduled",
        group_field="contact_group_ids" if merged.get("contact_group_ids") else "contact_group_id",
        from_field=from_field,
        warnings=warnings,
        circuit_breaker=circuit_breaker,
    )


#: The keys a campaign's `recurrence` object takes (`Recurrence.parse`, with its synonyms).
RECURRENCE_KEYS = frozenset(
    {"frequency", "type", "interval", "weekdays", "days", "month_day", "day_of_month", "until", "count"}
)
#: A call's settings, which a campaign takes at its top level as well as in its `voice` object.
CALL_SETTINGS = ("opening_message", "instructions", "call_duration_limit", "machine_detection", "voicemail_message")
#: The keys a campaign's `voice` object takes: the call settings, and the `<Say>` voice and
#: language the tracker reads.
VOICE_SETTINGS = (*CALL_SETTINGS, "voice", "language")
VOICE_KEYS = frozenset(VOICE_SETTINGS)
_VOICE_SYNONYMS = {name: group[0] for group in HAND_CHECKED["voice"] for name in group[1:]}


def unknown_key_errors(path: str, value: dict[str, Any], known: frozenset[str]) -> list[dict[str, str]]:
    """An object checked by hand (not a model) names its unknown keys as a model would."""
    return [
        {"field": f"{path}.{key}", "reason": unknown_field_reason(str(key), set(known))}
        for key in value
        if key not in known
    ]


def voice_errors(voice: dict[str, Any]) -> list[dict[str, str]]:
    """A `voice` object's unknown keys, and a `call_duration_limit` or `<Say>` setting of the wrong kind."""
    errors = unknown_key_errors("voice", voice, VOICE_KEYS | set(_VOICE_SYNONYMS))
    if voice.get("call_duration_limit") is not None:
        try:
            parse_call_duration_limit(voice["call_duration_limit"])
        except ValueError as exc:
            errors.append({"field": "voice.call_duration_limit", "reason": str(exc)})
    for key in ("voice", "language", "instructions"):
        if voice.get(key) is not None and not isinstance(voice[key], str):
            errors.append({"field": f"voice.{key}", "reason": "must be a string"})
    return errors


#: How far behind now a schedule may be before it is called past (a client's "now" takes a moment
#: to arrive).
_PAST_GRACE = timedelta(minutes=1)
#: The furthest any zone's clock runs ahead of UTC (Kiribati's Line Islands).
_FURTHEST_AHEAD = timedelta(hours=14)


def schedule_warnings(
    scheduled_at: datetime | None,
    scheduled_wall: datetime | None,
    timezone: str,
    now: datetime,
    field_name: str = "scheduled_at",
) -> list[dict[str, str]]:
    """A warning when the schedule is already past: such a campaign is accepted and sends at launch.
    It names the field as the request gave it (`schedule` or `scheduled_at`) and writes the time
    as the API writes times: an instant in UTC to the second (`…Z`), a wall-clock time without zone."""
    if scheduled_at is not None:
        past = scheduled_at < now - _PAST_GRACE
        where = ""
    elif scheduled_wall is not None and timezone == "contact_local":
        past = scheduled_wall < (now + _FURTHEST_AHEAD - _PAST_GRACE).replace(tzinfo=None)
        where = " in some contacts' time zones"
    elif scheduled_wall is not None:
        past = scheduled_wall < (now - _PAST_GRACE).astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
        where = f" in {timezone}"
    else:
        return []
    if not past:
        return []
    shown = iso(scheduled_at or scheduled_wall or now)
    return [{"field": field_name, "message": f"{shown} is already past{where}: those contacts are sent at launch"}]


def machine_detection_errors(channel: Channel, voice: dict[str, Any]) -> list[dict[str, str]]:
    """What is wrong with a campaign's `machine_detection` and `voicemail_message` (given at the top
    level, in `config` or in `voice`): a voice-only setting on another channel, an unknown mode, a
    `voicemail` without a message to leave, a message that is not a valid template."""
    errors: list[dict[str, str]] = []
    mode, message = voice.get("machine_detection"), voice.get("voicemail_message")
    if mode is not None and mode not in MACHINE_DETECTION:
        errors.append({"field": "machine_detection", "reason": f"must be one of {', '.join(MACHINE_DETECTION)}"})
    elif mode not in (None, "off") and channel != "voice":
        errors.append({"field": "machine_detection", "reason": "only a voice campaign detects answering machines"})
    if message is not None and not isinstance(message, str):
        errors.append({"field": "voicemail_message", "reason": "must be a string (a template)"})
        return errors
    if message is not None and channel != "voice":
        errors.append({"field": "voicemail_message", "reason": "only a voice campaign leaves voicemail"})
    elif mode == "voicemail" and not (message or "").strip():
        errors.append({"field": "voicemail_message", "reason": "required when machine_detection is 'voicemail'"})
    else:
        errors.extend(template_errors("voicemail_message", message))
    return errors


def _recipients(items: list[str | ContactIn], channel: Channel, bad: Any) -> list[Recipient]:
    out: list[Recipient] = []
    for index, item in enumerate(items):
        if isinstance(item, str):  # an address: an email when it has an @ or the campaign sends email
            contact = ContactIn(email=item) if "@" in item or channel == "email" else ContactIn(phone=item)
        else:
            contact = item
        where = f"contacts[{index}]"
        phone = email = None
        if contact.phone:
            try:
                phone = e164(contact.phone)  # (a number already in E.164 skips the full parse)
            except ValueError as exc:
                bad(where, str(exc))
                continue
        if contact.email:
            if not _EMAIL.match(contact.email):
                bad(where, f"{contact.email!r} is not a valid email address")
                continue
            email = contact.email.strip().lower()
        if channel == "email" and not email:
            bad(where, "an email campaign needs an email address for each contact")
            continue
        if channel != "email" and not phone:
            bad(where, f"a {channel} campaign needs a phone number in E.164 for each contact")
            continue
        if contact.timezone and not is_valid_zone(contact.timezone):
            bad(where + ".timezone", f"{contact.timezone!r} is not an IANA time zone name")
            continue
        refused = [
            *opt_out_key_errors(f"{where}.", contact.model_extra or {}),
            *opt_out_key_errors(f"{where}.metadata.", contact.metadata),
        ]
        for error in refused:  # (an opt-out is never a campaign's to change)
            bad(error["field"], error["reason"])
        if refused:
            continue
        metadata = {**contact.metadata, **(contact.model_extra or {})}
        fields = {
            k: getattr(contact, k) for k in ("first_name", "last_name", "company", "timezone") if getattr(contact, k)
        }
        out.append(Recipient(phone=phone, email=email, fields=fields, metadata=metadata))
    return out
