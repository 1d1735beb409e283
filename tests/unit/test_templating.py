"""Sandboxed templates: variables, defaults, missing variables, unsafe access, syntax errors."""

from __future__ import annotations

import re
import time

import pytest

from shared.domain.templating import (
    MAX_OUTPUT,
    BudgetError,
    MissingVariable,
    TemplateError,
    check_budget,
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


def test_an_empty_metadata_value_renders_empty_and_a_null_or_an_empty_field_is_missing():
    contact = {**CONTACT, "first_name": "", "last_name": None, "metadata": {"suffix": "", "note": None}}
    context = contact_context(contact, None)
    assert render("[{{suffix}}]", context) == "[]"
    for missing in ("note", "first_name", "name"):
        with pytest.raises(MissingVariable, match=missing):
            render("{{ " + missing + " }}", context)


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


# --- the budget: work and values bounded (issue 10) ---------------------------------------------

BOMB = '{% set s = "x" * 60000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}'


def test_a_loop_bomb_fails_fast_naming_the_budget():
    started = time.monotonic()
    with pytest.raises(BudgetError, match=r"too much work \(over 100,000 loop steps"):
        render(BOMB, {})
    assert time.monotonic() - started < 1.0


def test_slow_steps_run_out_of_time_before_steps():
    with pytest.raises(BudgetError, match=r"takes too long to render \(over 0.5 s\)"):
        render("{% for a in items %}{{ text|wordcount }}{% endfor %}",
               {"items": list(range(5000)), "text": "ab " * 20000})


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ('{{ "x"|center(999999999) }}', "the center filter would make a value larger than 64,000"),
        ('{% set s = "a\n" * 30000 %}{{ s|indent(60000) }}', "the indent filter would make"),
        ('{{ ("x" * 60000)|wordwrap(1, wrapstring="y" * 100) }}', "the wordwrap filter would make"),
        ('{% set s = "x" * 60000 %}{{ s|replace("x", "xxxx") }}', "the replace filter would make"),
        ('{% set s = "x" * 60000 %}{{ s.replace("x", "xxxx") }}', "the replace would make"),
        ('{% set s = "x" * 60000 %}{{ s|join(s) }}', "the join filter would make"),
        ('{% set s = "x" * 60000 %}{{ s.join(s) }}', "the join would make"),
        ('{{ {"a": 1}|tojson(999999999) }}', "the tojson filter would make"),
        ("{{ [[1]] * 60000|sum(start=[]) }}", "the sum filter adds numbers only"),
        ('{{ ("x" * 600)|batch(999999999)|list }}', "the batch filter's count is larger than"),
        ('{% set s = "x" * 60000 %}{% set s = s ~ s %}', "a value of the template is larger than 64,000"),
        ('{% set s = "x" * 40000 %}{% set s = s + s %}', "the sum is longer than 64,000"),
        ("{% set x = [1] * 60000 %}{% set y = [x] * 60000 %}", "the repetition is longer than"),
        ("{% set x = [1] * 6000 %}{% set y = [x, x, x, x, x, x, x, x, x, x, x] %}", "a value of the template"),
        ('{{ "%0999999999d" % 1 }}', "a width or precision of the template is larger than 64,000"),
        ('{{ "%*d" % (999999999, 1) }}', "a '*' width in a format string is not allowed"),
        ('{{ "{:>999999999}".format(1) }}', "a width or precision of the template is larger than"),
        ('{{ "{:{}}".format(1, 99999999) }}', "a nested format field is not allowed"),
        ("{{ '%0999999999d'|format(1) }}", "a width or precision of the template is larger than"),
        ("{% set n = 2**2000 %}{% set m = n * n %}{{ m * m }}", "the product is too large"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "the template calls itself too deeply"),
    ],
)
def test_what_would_build_a_huge_value_is_refused_before_it_is_built(source, error):
    with pytest.raises(BudgetError, match=re.escape(error)):
        render(source, {})


@pytest.mark.parametrize(
    ("source", "attribute"),
    [('{{ "x".ljust(999999999) }}', "ljust"), ('{{ ("\t" * 9)|string }}{{ "\t".expandtabs(99) }}', "expandtabs"),
     ('{{ (5).to_bytes(999999999, "big") }}', "to_bytes"), ('{{ "x".zfill(999999999) }}', "zfill")],
)
def test_only_known_string_methods_are_callable(source, attribute):
    with pytest.raises(TemplateError, match=f"access to attribute '{attribute}'"):
        render(source, {})


def test_a_recursive_loop_is_refused_at_compile_time():
    with pytest.raises(TemplateError, match="line 2: recursive loops are not allowed"):
        compile_template('\n{% for x in "ab" recursive %}{{ loop("ab") }}{% endfor %}')


def test_a_source_too_long_is_refused():
    with pytest.raises(TemplateError, match="longer than 100,000 characters"):
        compile_template("x" * 100_001)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("Hi {{first_name}}, {{ company|upper }}: {{ items|join(', ') }} at {{ '%.2f'|format(price) }}",
         {"first_name": "Ann", "company": "acme", "items": ["a", "b"], "price": 3.5}, "Hi Ann, ACME: a, b at 3.50"),
        ("{% for i in items %}{{ loop.index }}. {{ i.name|title }}{% if not loop.last %}, {% endif %}{% endfor %}",
         {"items": [{"name": "x y"}, {"name": "z"}]}, "1. X Y, 2. Z"),
        ("{{ notes|replace('\n', ' ') }} {{ first_name ~ ' ' ~ last_name }} {{ (a + b) * 2 }} {{ meta.get('k') }}",
         {"notes": "a\nb", "first_name": "A", "last_name": "B", "a": 1, "b": 2, "meta": {"k": "v"}}, "a b A B 6 v"),
        ("{{ first_name.split()[0] }} {{ phone[-4:] }} {{ amount|round(2) }} {{ [1, 2]|sum }} {{ '{:>5}'.format(n) }}",
         {"first_name": "Ann Lee", "phone": "+14155550123", "amount": 3.14159, "n": 7}, "Ann 0123 3.14 3     7"),
        ("{% macro greet(n) %}Hi {{ n }}{% endmacro %}{{ greet(first_name) }}, {{ '%s has %d' % (first_name, 3) }}",
         {"first_name": "Ann"}, "Hi Ann, Ann has 3"),
        ("{% for a in s %}{% for b in s %}.{% endfor %}{% endfor %}", {"s": "x" * 300}, "." * 90_000),
    ],
)
def test_ordinary_templates_render_within_the_budget(source, context, expected):
    if len(expected) > MAX_OUTPUT:  # 90,000 steps are within the budget; the output is not
        with pytest.raises(TemplateError, match="longer than"):
            render(source, context)
        return
    assert render(source, context) == expected


def test_a_bomb_is_found_before_any_contact_is_rendered():
    with pytest.raises(BudgetError, match="too much work"):
        check_budget(BOMB)
    with pytest.raises(BudgetError, match="center filter"):
        check_budget('{{ "x"|center(999999999) }}', html=True)
    # a message too long on the template's own literals is too long for every contact
    long_loop = '{% set s = "x" * 60000 %}{% for a in s %}{% for b in s %}{{ a }}{% endfor %}{% endfor %}'
    with pytest.raises(BudgetError, match="longer than 64,000 characters"):
        check_budget(long_loop)
    with pytest.raises(BudgetError, match="longer than 64,000 characters"):
        render(long_loop, {})
    # what depends on the contact's data is theirs to meet at send time: no error here
    check_budget("{% for a in items %}{% for b in items %}{{ a + b }}{% endfor %}{% endfor %} {{ n * 2 }}")
    check_budget("Hi {{first_name}}, {{ order|default('none') }}")
