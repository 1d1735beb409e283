"""The dashboard's forms become JSON bodies with numbers as numbers: the API takes an integer or
a rate only as a JSON number, and a form types every value as text."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from services.api.dashboard import forms


def test_the_numbers_typed_in_a_campaign_form_are_sent_as_numbers() -> None:
    form = MultiDict(
        [("name", "N"), ("max_concurrent", "3"), ("max_retries", "0"), ("start_hour", "9"), ("end_hour", "17"),
         ("breaker_failure_rate", "0.25"), ("breaker_min_sends", "20"), ("retry_interval", "5m")]
    )  # fmt: skip
    body = forms.campaign_request(form, editing=False)
    assert (body["max_concurrent"], body["max_retries"], body["retry_interval"]) == (3, 0, "5m")
    assert body["sending_window"] == {"start_hour": 9, "end_hour": 17, "excluded_days": []}
    assert body["circuit_breaker"] == {"failure_rate": 0.25, "min_sends": 20}


@pytest.mark.parametrize(
    ("typed", "sent"),
    [("2", 2.0), ("0.5", 0.5), (".5", 0.5), ("fast", "fast"), ("1e3", "1e3"), ("", None)],
)
def test_a_decimal_is_sent_as_a_number_or_as_typed_for_the_api_to_refuse(typed: str, sent: object) -> None:
    assert forms.decimal(MultiDict([("max_per_second", typed)]), "max_per_second") == sent


def test_a_whole_number_too_long_for_a_number_is_sent_as_typed() -> None:
    assert forms.campaign_request(MultiDict([("max_concurrent", "9" * 5000)]), editing=False)["max_concurrent"] == (
        "9" * 5000
    )
