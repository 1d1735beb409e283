"""A field and its synonyms sent together (`type` and `channel`, `message` and `message_template`,
`caller_id` and `from_number`, …): one setting given twice. Alike, it counts once; different, it is
a 422 naming each name given."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, get_args

from pydantic import AliasChoices, BaseModel

from shared.domain.phone import InvalidPhone, to_e164

#: The synonyms inside the objects a campaign checks by hand rather than through a model (`voice`,
#: `recurrence`): in each group, the first name is the one the others stand for.
HAND_CHECKED: dict[str, tuple[tuple[str, ...], ...]] = {
    "voice": (("call_duration_limit", "max_duration", "max_call_duration", "time_limit"),),
    "recurrence": (("frequency", "type"), ("weekdays", "days"), ("month_day", "day_of_month")),
}
#: Longest value quoted in a disagreement's reason.
_SHOWN = 40


@functools.cache
def _groups(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Each field of `model` that has synonyms, as its accepted names (the field's own first)."""
    return tuple(
        (name, *(c for c in info.validation_alias.choices if isinstance(c, str) and c != name))
        for name, info in model.model_fields.items()
        if isinstance(info.validation_alias, AliasChoices)
    )


@functools.cache
def _nested(model: type[BaseModel]) -> tuple[tuple[tuple[str, ...], type[BaseModel]], ...]:
    """The fields of `model` holding a model that has synonyms (itself or further in), by their
    accepted names."""
    found = []
    for name, info in model.model_fields.items():
        names: tuple[str, ...] = (name,)
        if isinstance(info.validation_alias, AliasChoices):
            names = (name, *(c for c in info.validation_alias.choices if isinstance(c, str) and c != name))
        for inner in models_in(info.annotation):
            if inner is not model and _has_synonyms(inner):
                found.append((names, inner))
    return tuple(found)


def _has_synonyms(model: type[BaseModel]) -> bool:
    return bool(_groups(model)) or any(_has_synonyms(m) for _, m in _nested(model))


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (`X | None`, `list[X]`, …)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in models_in(arg)]


def one_name_each(
    model: type[BaseModel], data: dict[str, Any], path: str = "", hand_checked: bool = False
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """`data` with each setting given under one name: synonyms that agree (once normalised) keep
    the first of them; synonyms that disagree keep it too, and each name given is reported. Into
    nested objects as well (a campaign's `config`, and with `hand_checked` its `voice` and
    `recurrence`)."""
    data, errors = _collapse(data, _groups(model), path)
    for names, inner in _nested(model):
        for key in names:
            if isinstance(data.get(key), dict):
                data[key], found = one_name_each(inner, data[key], f"{path}{key}.", hand_checked)
                errors += found
    if hand_checked:
        for key, groups in HAND_CHECKED.items():
            if isinstance(data.get(key), dict):
                data[key], found = _collapse(data[key], groups, f"{path}{key}.")
                errors += found
    return data, errors


def _collapse(
    data: dict[str, Any], groups: tuple[tuple[str, ...], ...], path: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """`data` with each group of synonyms down to its first name given; the disagreements."""
    errors: list[dict[str, str]] = []
    for group in groups:
        given = [name for name in data if name in group]
        if len(given) < 2:
            continue
        values = [data[name] for name in given]
        data = {k: v for k, v in data.items() if k not in given[1:]}
        if len({repr(_normal(group[0], value)) for value in values}) == 1:
            continue
        names = " and ".join(f"`{name}`" for name in given)
        shown = ", ".join(_quoted(value) for value in values)
        reason = f"{names} are one setting and disagree ({shown}): send one of them, or the same value"
        errors += [{"field": path + name, "reason": reason} for name in given]
    return data, errors


def _quoted(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"


def _normal(name: str, value: Any) -> Any:
    """`value` as compared with its synonyms': text without its surrounding spaces (a channel or a
    frequency in any case, a phone number in E.164, an email in lower case, a time as the instant
    or wall time it names); numbers as written in JSON alike ("60" and 60)."""
    if isinstance(value, list):
        return [_normal(name, item) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    text = str(value).strip()
    if name in ("channel", "frequency"):
        return text.lower()
    if name == "scheduled_at":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return text.lower()
    if name == "from_number":
        if "@" in text:
            return text.lower()
        try:
            return to_e164(text)
        except InvalidPhone:
            return text
    return text
