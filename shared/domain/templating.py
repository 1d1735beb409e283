"""User templates (`{{first_name}}`), rendered in jinja2's sandbox with bounded output.

A template is untrusted input: the sandbox forbids access to Python internals, and a variable the
contact lacks is an error (`MissingVariable`) instead of a hole in the message, unless the template
gives a default (`{{ order_number | default("n/a") }}`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.row import Row

#: Variables every contact has (beside its metadata).
BUILT_INS: tuple[str, ...] = ("first_name", "last_name", "email", "phone", "company", "agent_name")
#: Longest message a template may produce, in characters.
MAX_OUTPUT = 64_000


class TemplateError(ValueError):
    """A template that cannot be compiled; `line` says where."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class MissingVariable(ValueError):
    """The contact lacks a variable the template uses."""

    def __init__(self, name: str):
        super().__init__(f"missing variable: {name}")
        self.name = name


class _Undefined(StrictUndefined):
    """Undefined that names the variable when it is used."""


_ENV = ImmutableSandboxedEnvironment(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
#: For email HTML: every value is escaped.
_HTML_ENV = ImmutableSandboxedEnvironment(undefined=_Undefined, autoescape=True, keep_trailing_newline=True)


@functools.lru_cache(maxsize=1024)
def compile_template(source: str, html: bool = False) -> Any:
    """The compiled template, or TemplateError with the line of the mistake."""
    try:
        return (_HTML_ENV if html else _ENV).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}", exc.lineno) from exc


def variables(source: str) -> set[str]:
    """Names of the variables a template reads (those with a `default` filter excluded)."""
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}", exc.lineno) from exc
    defaulted = {
        f.node.name for f in ast.find_all(nodes.Filter) if f.name in ("default", "d") and isinstance(f.node, nodes.Name)
    }
    return set(meta.find_undeclared_variables(ast)) - defaulted


def campaign_text(message_template: str | None, voice: Mapping[str, Any] | None, agent_opening: str | None) -> str:
    """The text a campaign sends: its message template; for a call without one, the opening
    message it sets, else its agent's."""
    return message_template or (voice or {}).get("opening_message") or agent_opening or ""


def contact_context(contact: Row, agent_name: str | None) -> dict[str, Any]:
    """The variables of one contact: its metadata, then the built-ins (which win); empty ones dropped."""
    context: dict[str, Any] = dict(contact.get("metadata") or {})
    for key in BUILT_INS[:-1]:
        if contact.get(key) not in (None, ""):
            context[key] = contact.get(key)
    if agent_name:
        context["agent_name"] = agent_name
    names = [contact.get("first_name"), contact.get("last_name")]
    context.setdefault("name", " ".join(n for n in names if n) or None)
    return {k: v for k, v in context.items() if v not in (None, "")}


def render(source: str, context: Mapping[str, Any], html: bool = False) -> str:
    """Render `source` with `context` in the sandbox (values escaped when `html`):
    MissingVariable, TemplateError or the text."""
    template = compile_template(source, html)
    size = 0
    out: list[str] = []
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"the message is longer than {MAX_OUTPUT} characters")
            out.append(chunk)
    except UndefinedError as exc:
        raise MissingVariable(_undefined_name(exc)) from exc
    except SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc}") from exc
    return "".join(out)


def _undefined_name(exc: UndefinedError) -> str:
    # jinja2's message is "'name' is undefined"
    message = str(exc)
    if message.startswith("'") and "' is undefined" in message:
        return message[1 : message.index("' is undefined")]
    return message
