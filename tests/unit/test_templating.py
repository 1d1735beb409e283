"""Sandboxed templates: variables, defaults, missing variables, unsafe access, syntax errors."""

from __future__ import annotations

import pytest

from shared.domain.templating import (
    MAX_OUTPUT,
    MissingVariable,
    TemplateError,
    compile_template,
    contact_context,
    render,
    variables,
)

CONTACT = {"first_name": "Ann", "last_name": "Lee", "phone": "+14155550123", "email": None,
           "company": "Acme", "metadata": {"order_number": "A-17", "first_name": "ignored"}}


def test_built_ins_metadata_and_agent_name():
    text = render(
        "Hi {{first_name}}, this is {{agent_name}} from {{company}}. Order #{{order_number}}.",
        contact_context(CONTACT, "Riley"),
    )
    assert text == "Hi Ann, this is Riley from Acme. Order #A-17."


def test_name_is_the_full_name():
    assert render("{{name}}", contact_context(CONTACT, None)) == "Ann Lee"


@pytest.mark.parametrize(
    ("source", "missing"),
    [("Hi {{topic}}", "topic"), ("{{email}}", "email"), ("{{ agent_name }}", "agent_name")],
)
def test_a_missing_variable_is_an_error_not_a_hole(source, missing):
    with pytest.raises(MissingVariable) as info:
        render(source, contact_context(CONTACT, None))
    assert str(info.value) == f"missing variable: {missing}"


def test_a_default_fills_a_missing_variable():
    assert render('{{ tracking | default("n/a") }}', {}) == "n/a"
    assert variables('{{ tracking | default("n/a") }} {{first_name}}') == {"first_name"}


@pytest.mark.parametrize(
    "source",
    ["{{ x.__class__.__mro__ }}", "{{ x.__init__.__globals__ }}", "{{ ''.__class__.__subclasses__() }}"],
)
def test_python_internals_are_out_of_reach(source):
    with pytest.raises((TemplateError, MissingVariable)):
        render(source, {"x": 1})


def test_output_is_bounded():
    with pytest.raises(TemplateError, match="longer than"):
        render("{% for i in items %}xxxxxxxxxx{% endfor %}", {"items": list(range(100000))})
    assert MAX_OUTPUT < 100000 * 10


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ first_name.format }}", "a function cannot be printed"),  # no Python object leaks out
        ("{{ self }}", "a TemplateReference cannot be printed"),
        ("{{ ''.__class__ }}", "unsafe"),
        ("{{ 2**20000 }}", "the power is too large"),  # would not even print (4,300-digit limit)
        ("{% set n = 9 %}{{ n**9999999 }}", "the power is too large"),  # would hold the process
        ("{{ 'x' * 10**9 }}", "the repetition is longer than"),
        ("{{ first_name * 100000 }}", "the repetition is longer than"),
    ],
)
def test_the_sandbox_refuses_what_would_leak_or_hold_the_process(source, error):
    compile_template(source)  # these compile: the refusal comes when rendering
    with pytest.raises(TemplateError, match=error):
        render(source, {"first_name": "Ann"})


@pytest.mark.parametrize("name", ["range", "lipsum", "dict", "cycler", "joiner", "namespace"])
def test_the_sandbox_has_no_globals(name):
    with pytest.raises(MissingVariable, match=f"missing variable: {name}"):
        render(f"{{{{ {name} }}}}", {})


@pytest.mark.parametrize("source", ["{% include 'x' %}", "{% import 'os' as os %}", "{% extends 'base' %}",
                                    "{% from 'x' import y %}"])
def test_a_template_cannot_load_others(source):
    with pytest.raises(TemplateError, match="line 1: a template cannot include or import others"):
        compile_template(source)


def test_plain_values_and_arithmetic_still_render():
    assert render("{{ 2**10 }} {{ 'ab' * 3 }} {{ items }} {{ n * 2 }} {{ first_name|upper }}",
                  {"items": [1, 2], "n": 3, "first_name": "Ann"}) == "1024 ababab [1, 2] 6 ANN"


def test_a_syntax_error_names_the_line():
    with pytest.raises(TemplateError) as info:
        render("line one\n{{ first_name", {})
    assert info.value.line == 2
    assert str(info.value).startswith("line 2:")
