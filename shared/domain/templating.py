"""User templates (`{{first_name}}`), rendered in jinja2's sandbox with bounded output.

A template is untrusted input: the sandbox forbids access to Python internals, and a variable the
contact lacks is an error (`MissingVariable`) instead of a hole in the message, unless the template
gives a default (`{{ order_number | default("n/a") }}`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
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


#: What `{{ … }}` may print: plain values (a function, a class or jinja2's own objects never); an
#: Undefined raises itself when printed (a missing variable).
_PRINTABLE = (str, int, float, bool, Decimal, date, list, tuple, dict, type(None), Undefined)
#: `**` and `*` on whole numbers and sequences are bounded, so that `{{ 9**9999999 }}` or
#: `{{ 'x' * 10**9 }}` cannot hold the process.
_MAX_BITS = 4096


def _printable(value: Any) -> Any:
    if not isinstance(value, _PRINTABLE) or isinstance(value, type):
        raise SecurityError(f"a {type(value).__name__} cannot be printed")
    return value


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with no globals (no `range`, `lipsum`, `dict`, …), plain values
    only in the output, and bounded powers and repetitions."""

    intercepted_binops = frozenset({"**", "*"})

    def __init__(self, autoescape: bool):
        super().__init__(undefined=_Undefined, autoescape=autoescape, keep_trailing_newline=True, finalize=_printable)
        self.globals.clear()

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        power = operator == "**" and isinstance(left, int) and isinstance(right, int)
        if power and right > 0 and max(left.bit_length(), 1) * right > _MAX_BITS:
            raise SecurityError("the power is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"the repetition is longer than {MAX_OUTPUT}")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(autoescape=False)
#: For email HTML: every value is escaped.
_HTML_ENV = _Sandbox(autoescape=True)
#: Statements that reach outside the template: there is nothing for them to load.
_LOADING = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@functools.lru_cache(maxsize=1024)
def compile_template(source: str, html: bool = False) -> Any:
    """The compiled template, or TemplateError with the line of the mistake."""
    env = _HTML_ENV if html else _ENV
    try:
        ast = env.parse(source)
        for node in ast.find_all(_LOADING):
            raise TemplateError(f"line {node.lineno}: a template cannot include or import others", node.lineno)
        return env.from_string(ast)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}", exc.lineno) from exc
    except TemplateError:
        raise
    except Exception as exc:  # the compiler folds constants: `{{ 2**20000 }}` fails here
        raise TemplateError(f"cannot compile: {exc}") from exc


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
    except TemplateError:
        raise
    except Exception as exc:  # a template is untrusted: whatever it does wrong is its own error
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from exc
    return "".join(out)


def _undefined_name(exc: UndefinedError) -> str:
    # jinja2's message is "'name' is undefined"
    message = str(exc)
    if message.startswith("'") and "' is undefined" in message:
        return message[1 : message.index("' is undefined")]
    return message
