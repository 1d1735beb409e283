"""User templates (`{{first_name}}`), rendered in a bounded sandbox.

A template is untrusted input: the sandbox (`template_sandbox.py`) forbids access to Python
internals and bounds the work and the values of a render (a template that blows it is a
`BudgetError`), and a variable the contact lacks is an error (`MissingVariable`) instead of a hole
in the message, unless the template gives a default (`{{ order_number | default("n/a") }}`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError

from shared.domain.template_sandbox import BoundedSandbox, BudgetExceeded, close_budget, open_budget
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


class BudgetError(TemplateError):
    """A template that does more work, builds a larger value or writes a longer message than a
    message may take."""


class _Undefined(StrictUndefined):
    """Undefined that names the variable when it is used."""


_ENV = BoundedSandbox(autoescape=False, undefined=_Undefined)
#: For email HTML: every value is escaped.
_HTML_ENV = BoundedSandbox(autoescape=True, undefined=_Undefined)
#: Statements that reach outside the template: there is nothing for them to load.
_LOADING = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
#: Longest template source, in characters (compiling costs time too).
MAX_SOURCE = 100_000


@functools.lru_cache(maxsize=1024)
def compile_template(source: str, html: bool = False) -> Any:
    """The compiled template, or TemplateError with the line of the mistake."""
    env = _HTML_ENV if html else _ENV
    if len(source) > MAX_SOURCE:
        raise TemplateError(f"the template is longer than {MAX_SOURCE:,} characters")
    try:
        ast = env.parse(source)
        for node in ast.find_all(_LOADING):
            raise TemplateError(f"line {node.lineno}: a template cannot include or import others", node.lineno)
        return env.from_string(env.instrument(ast))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}", exc.lineno) from exc
    except TemplateError:
        raise
    except BudgetExceeded as exc:
        raise TemplateError(str(exc)) from exc
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
    """The variables of one contact: its metadata, then the built-ins (which win when not empty).
    A null is missing, and so is an empty built-in field; a metadata value given as `""` is there,
    empty (the sender said so)."""
    context: dict[str, Any] = {k: v for k, v in (contact.get("metadata") or {}).items() if v is not None}
    for key in BUILT_INS[:-1]:
        if contact.get(key) not in (None, ""):
            context[key] = contact.get(key)
    if agent_name:
        context["agent_name"] = agent_name
    name = " ".join(n for n in (contact.get("first_name"), contact.get("last_name")) if n)
    if name:
        context.setdefault("name", name)
    return context


def render(source: str, context: Mapping[str, Any], html: bool = False) -> str:
    """Render `source` with `context` in the sandbox (values escaped when `html`):
    MissingVariable, TemplateError or the text."""
    template = compile_template(source, html)
    size = 0
    out: list[str] = []
    token = open_budget()
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise BudgetError(f"the message is longer than {MAX_OUTPUT:,} characters")
            out.append(chunk)
    except UndefinedError as exc:
        raise MissingVariable(_undefined_name(exc)) from exc
    except BudgetExceeded as exc:
        raise BudgetError(str(exc)) from exc
    except RecursionError as exc:
        raise BudgetError("the template calls itself too deeply") from exc
    except SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc}") from exc
    except TemplateError:
        raise
    except Exception as exc:  # a template is untrusted: whatever it does wrong is its own error
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from exc
    finally:
        close_budget(token)
    return "".join(out)


def check_budget(source: str, html: bool = False) -> str | None:
    """BudgetError when `source` blows the render budget (its work, its values, the length of what
    it writes) with every variable left empty: a template that does so on its own literals, such
    as a loop over a long string, does so for every contact. Other failures are the contact's to
    meet at send time, and pass here. What it writes with every variable empty (its own text, for
    a channel's length limit), or None when that render fails."""
    compile_template(source, html)
    trial = {name: ChainableUndefined(name=name) for name in variables(source) | set(BUILT_INS)}
    try:
        return render(source, trial, html)
    except BudgetError:
        raise
    except (MissingVariable, TemplateError):
        return None  # what the contact's data makes of it is met at send time


def _undefined_name(exc: UndefinedError) -> str:
    # jinja2's message is "'name' is undefined"
    message = str(exc)
    if message.startswith("'") and "' is undefined" in message:
        return message[1 : message.index("' is undefined")]
    return message
