"""The sandbox user templates render in, bounded in work as well as in output.

jinja2's sandbox keeps a template away from Python's internals but not from the machine: a loop
over a loop of a 60,000-character string runs billions of steps, and `"x"|center(10**9)` makes a
gigabyte. Here every value a template builds is bounded (`MAX_VALUE`: characters of a string,
elements of a list, counted through nesting), each step of work (a loop iteration, a call, a
filter) is counted against a budget of steps and time, and the string methods a template may call
are a known list. A render opens its budget with `open_budget()`.
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from datetime import date
from decimal import Decimal
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

#: Largest value a template may build: characters of a string, elements of a list (nested ones
#: counted too). The message itself is bounded the same.
MAX_VALUE = 64_000
#: Loop iterations, calls and filter applications one render may take.
MAX_STEPS = 100_000
#: Seconds one render may take.
MAX_SECONDS = 0.5
#: Bits of a whole number a template may compute (`{{ 9**9999999 }}` would hold the process).
MAX_BITS = 4096


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: The string methods a template may call: each returns at most about what it was given
#: (`replace`, `join` and `format` are checked before they run). Padding ones (`ljust`, `zfill`,
#: `expandtabs`, …) have the `center` filter and format specs instead.
STR_METHODS = _words(
    "capitalize casefold count endswith find format format_map index isalnum isalpha isdecimal isdigit "
    "islower isnumeric isspace istitle isupper join lower lstrip partition removeprefix removesuffix "
    "replace rfind rindex rpartition rsplit rstrip split splitlines startswith strip swapcase title "
    "upper"
)
#: Methods of lists and mappings a template may call (the sandbox refuses the changing ones anyway).
CONTAINER_METHODS = frozenset({"count", "get", "index", "items", "keys", "values"})
#: Filters that never turn their first argument into one string (the others are checked first).
_ELEMENTWISE = _words(
    "attr batch count d default dictsort first groupby items last length list map max min random reject "
    "rejectattr reverse select selectattr slice sort sum unique"
)
_NUMBER = (int, float, Decimal)
_SIZED = (str, list, tuple, dict)


class BudgetExceeded(SecurityError):
    """The template does more work, or builds a larger value, than a message may take."""


class _Budget:
    """What is left of one render's steps, and when its time is up."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_SECONDS


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def open_budget() -> Token[_Budget | None]:
    """Open a render's budget (the steps and the time its template may take, from now); give the
    token back to `close_budget` when the render ends. (Not a context manager: a plain render
    takes a few microseconds, and one costs about one of them.)"""
    return _BUDGET.set(_Budget())


def close_budget(token: Token[_Budget | None]) -> None:
    """Close the budget `open_budget` opened."""
    _BUDGET.reset(token)


def spend() -> None:
    """Count one step of the render under way; BudgetExceeded when its steps or time run out (no
    render under way, as when the compiler folds constants: nothing to count)."""
    left = _BUDGET.get()
    if left is None:
        return
    left.steps -= 1
    if left.steps < 0:
        raise BudgetExceeded(f"the template does too much work (over {MAX_STEPS:,} loop steps, calls and filters)")
    if time.monotonic() > left.deadline:
        raise BudgetExceeded(f"the template takes too long to render (over {MAX_SECONDS:g} s)")


def size(value: Any, limit: int = MAX_VALUE) -> int:
    """About how large `value` is: a string's characters, a collection's elements and theirs; the
    count stops once it passes `limit`."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if not isinstance(value, list | tuple):
        return 1
    total = len(value)
    for item in value:
        if total > limit:
            break
        if isinstance(item, str | list | tuple | dict):
            total += size(item, limit - total)
    return total


def bounded(value: Any, what: str = "a value") -> Any:
    """`value`, when it is within MAX_VALUE; BudgetExceeded otherwise."""
    if isinstance(value, _SIZED) and size(value) > MAX_VALUE:
        raise BudgetExceeded(f"{what} of the template is larger than {MAX_VALUE:,}")
    return value


def _check_format(fmt: str, args: Iterable[Any], braces: bool) -> None:
    """A format string (`{…:spec}` when `braces`, else `%…d`) pads no further than MAX_VALUE, and
    the values it formats are bounded."""
    for number in re.findall(r"\d+", " ".join(_brace_specs(fmt) if braces else _percent_specs(fmt))):
        if int(number) > MAX_VALUE:
            raise BudgetExceeded(f"a width or precision of the template is larger than {MAX_VALUE:,}")
    for arg in args:
        bounded(arg, "a formatted value")


def _percent_specs(fmt: str) -> list[str]:
    specs: list[str] = re.findall(r"%[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?", fmt)
    if any("*" in s for s in specs):
        raise BudgetExceeded("a '*' width in a format string is not allowed in a template")
    return specs


def _brace_specs(fmt: str) -> list[str]:
    try:
        specs = [spec for _text, _name, spec, _conv in string.Formatter().parse(fmt) if spec]
    except ValueError:  # a malformed format string: str.format refuses it itself
        return []
    if any("{" in spec for spec in specs):
        raise BudgetExceeded("a nested format field is not allowed in a template")
    return specs


def _grows(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """How long the string a padding or replacing filter or method makes may be (0: no growth)."""
    text = value if isinstance(value, str) else ""
    arg: dict[int | str, Any] = dict(enumerate(args))
    arg.update(kwargs)
    if name == "center":
        return _int(arg.get(0, arg.get("width", 80)))
    if name == "indent":
        width = arg.get(0, arg.get("width", 4))
        prefix = _int(width) if not isinstance(width, str) else len(width)
        return len(text) + (text.count("\n") + 1) * prefix
    if name == "wordwrap":
        width = max(_int(arg.get(0, arg.get("width", 79))), 1)
        wrap = arg.get(2, arg.get("wrapstring")) or "\n"
        return len(text) + (len(text) // width + 1) * len(str(wrap))
    if name == "replace":
        old, new = str(arg.get(0, arg.get("old", ""))), str(arg.get(1, arg.get("new", "")))
        times = text.count(old) if old else len(text) + 1
        return len(text) + times * max(len(new) - len(old), 0)
    if name == "tojson":
        return size(value) * (1 + _int(arg.get(0, arg.get("indent")) or 0))
    return 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as a bounded filter: a step of the budget, its input and what it makes checked."""
    pass_arg = getattr(func, "jinja_pass_arg", None)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        spend()
        lead = 1 if pass_arg is not None else 0  # the context or environment jinja passes first
        value, rest = (args[lead], args[lead + 1 :]) if len(args) > lead else (None, ())
        if name not in _ELEMENTWISE:
            bounded(value, "a filtered value")
        if _grows(name, value, rest, kwargs) > MAX_VALUE:
            raise BudgetExceeded(f"the {name} filter would make a value larger than {MAX_VALUE:,}")
        if name == "sum" and not isinstance(kwargs.get("start", rest[1] if len(rest) > 1 else 0), _NUMBER):
            raise BudgetExceeded("the sum filter adds numbers only")
        if name in ("batch", "slice") and _int(rest[0] if rest else 0) > MAX_VALUE:
            raise BudgetExceeded(f"the {name} filter's count is larger than {MAX_VALUE:,}")
        if name == "format" and isinstance(value, str):
            _check_format(value, [*rest, *kwargs.values()], braces=False)
        if name == "join":
            items = list(args[lead]) if len(args) > lead else []
            sep = rest[0] if rest else kwargs.get("d", "")
            if size(items) + len(items) * len(str(sep)) > MAX_VALUE:
                raise BudgetExceeded(f"the join filter would make a value larger than {MAX_VALUE:,}")
            args = (*args[:lead], items, *rest)
        return bounded(func(*args, **kwargs), f"what the {name} filter makes")

    return guarded


def _check_str_call(text: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A string method's call makes no more than MAX_VALUE."""
    if method == "replace" and _grows("replace", text, args, kwargs) > MAX_VALUE:
        raise BudgetExceeded(f"the replace would make a value larger than {MAX_VALUE:,}")
    if method == "join" and args:
        items: Any = args[0] if isinstance(args[0], list | tuple | str) else ()
        if size(items) + len(items) * len(text) > MAX_VALUE:
            raise BudgetExceeded(f"the join would make a value larger than {MAX_VALUE:,}")


class _Instrument(NodeTransformer):
    """Counts a template's loops and bounds the values it builds: each `for` iterates through
    `environment.steps`, and the lists, tuples and dicts it writes and its `~` joins (and their
    parts) pass `environment.bounded`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            raise BudgetExceeded(f"line {node.lineno}: recursive loops are not allowed in a template")
        self.generic_visit(node)
        node.iter = _through("steps", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_through("bounded", part) for part in node.nodes]
        return _through("bounded", node)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":  # the names of `{% set a, b = … %}`
            return node
        return _through("bounded", node)

    visit_List = visit_Tuple = visit_Dict = _literal


def _through(method: str, node: Any) -> nodes.Expr:
    """`environment.<method>(node)` as a template expression."""
    return nodes.Call(nodes.EnvironmentAttribute(method), [node], [], None, None, lineno=node.lineno)


#: What `{{ … }}` may print: plain values (a function, a class or jinja2's own objects never); an
#: Undefined raises itself when printed (a missing variable).
_PRINTABLE = (str, int, float, bool, Decimal, date, list, tuple, dict, type(None), Undefined)


def _printable(value: Any) -> Any:
    if type(value) is str:  # the usual case, first; the render bounds the message's length
        return value
    if not isinstance(value, _PRINTABLE) or isinstance(value, type):
        raise SecurityError(f"a {type(value).__name__} cannot be printed")
    return bounded(value, "a printed value")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with no globals (no `range`, `lipsum`, `dict`, …), bounded
    operators, filters and string methods, and a template's loops counted (see `instrument`)."""

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, autoescape: bool, undefined: type[Undefined]):
        super().__init__(undefined=undefined, autoescape=autoescape, keep_trailing_newline=True, finalize=_printable)
        self.globals.clear()
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}

    def instrument(self, ast: nodes.Template) -> nodes.Template:
        """The parsed template with its loops counted and its values bounded."""
        return _Instrument().visit(ast)  # type: ignore[no-any-return]

    @staticmethod
    def steps(iterable: Any) -> Iterator[Any]:
        """A loop's items, each a step of the budget."""
        for item in iterable:
            spend()
            yield item

    @staticmethod
    def bounded(value: Any) -> Any:
        """A built value, when within MAX_VALUE."""
        return bounded(value)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in STR_METHODS
        if isinstance(obj, list | tuple | dict):
            return attr in CONTAINER_METHODS
        if isinstance(obj, _NUMBER):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        spend()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_call(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return bounded(super().call(__context, __obj, *args, **kwargs), "what a call returns")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__

        @functools.wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            spend()
            values = [*args, *kwargs.values()]
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            _check_format(fmt, values, braces=True)
            return bounded(wrapper(*args, **kwargs), "a formatted value")  # type: ignore[no-any-return]

        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        spend()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(left.bit_length(), 1) * right > MAX_BITS:
                raise BudgetExceeded("the power is too large")
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
                raise BudgetExceeded("the product is too large")
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and size(seq) * times > MAX_VALUE:
                    raise BudgetExceeded(f"the repetition is longer than {MAX_VALUE:,}")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and size(left) + size(right) > MAX_VALUE:
                raise BudgetExceeded(f"the sum is longer than {MAX_VALUE:,}")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else [right], braces=False)
        return super().call_binop(context, operator, left, right)
