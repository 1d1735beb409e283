"""The strict API's pure parts: the name meant by an unknown key, past schedules, numeric results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from services.api.schemas import (
    CALL_LIMIT_REASON,
    RECURRENCE_KEYS,
    CampaignCreate,
    Name,
    known_names,
    normalize,
    parse,
    parse_call_duration_limit,
    pydantic_details,
    schedule_warnings,
    unknown_field_reason,
    unknown_key_errors,
    voice_errors,
)
from shared.domain.results import Counts, results


def test_an_unknown_key_is_named_with_the_known_name_it_is_closest_to():
    known = known_names(CampaignCreate)
    assert {"scheduled_at", "schedule", "caller_id", "start_hour", "excluded_days"} <= known
    assert unknown_field_reason("scheduledAt", known) == "unknown field (did you mean `scheduled_at`?)"
    assert unknown_field_reason("max-concurrent", known) == "unknown field (did you mean `max_concurrent`?)"
    assert unknown_field_reason("mesage_template", known) == "unknown field (did you mean `message_template`?)"
    assert unknown_field_reason("colour", known) == "unknown field"


def _wall(text: str) -> datetime:
    """A wall-clock time (no zone), as a request without an offset gives."""
    return datetime.fromisoformat(text)


def test_a_schedule_already_past_is_warned_about_in_its_own_zone():
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert schedule_warnings(datetime(2026, 12, 5, 11, 0, tzinfo=UTC), None, "UTC", now)
    assert not schedule_warnings(datetime(2026, 12, 5, 11, 59, 30, tzinfo=UTC), None, "UTC", now)  # a moment's grace
    # 20:00 wall time is past in Tokyo (21:00 there) but not yet in New York (07:00 there)
    assert schedule_warnings(None, _wall("2026-12-05T20:00"), "Asia/Tokyo", now)
    assert not schedule_warnings(None, _wall("2026-12-05T20:00"), "America/New_York", now)
    # contact_local: past where the clock is furthest ahead (UTC+14: 02:00 on the 6th)
    assert schedule_warnings(None, _wall("2026-12-06T01:00"), "contact_local", now)
    assert not schedule_warnings(None, _wall("2026-12-06T03:00"), "contact_local", now)
    assert not schedule_warnings(None, None, "UTC", now)


@pytest.mark.parametrize(
    ("given", "warning"),
    [
        ({"schedule": "2026-12-05T12:00:00+02:00"}, ("schedule", "2026-12-05T10:00:00Z is already past")),
        ({"scheduled_at": "2026-12-05T10:00:00.5Z"}, ("scheduled_at", "2026-12-05T10:00:00Z is already past")),
        ({"config": {"schedule": "2026-12-05T10:00:00+00:00"}}, ("schedule", "2026-12-05T10:00:00Z is already")),
        ({"schedule": "2026-12-05T20:00", "timezone": "Asia/Tokyo"},
         ("schedule", "2026-12-05T20:00:00 is already past in Asia/Tokyo")),
    ],
)
def test_a_past_schedule_is_warned_about_by_the_name_it_was_given_and_in_the_apis_time_form(given, warning):
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    body = {"name": "c", "agent_id": "ag_1", "type": "sms", "contacts": ["+14155550123"], "message": "Hi", **given}
    [found] = normalize(parse(CampaignCreate, body), "UTC", now).warnings
    assert found["field"] == warning[0]
    assert found["message"].startswith(warning[1]), found


def test_results_carry_the_reply_rate_and_response_time_as_numbers():
    body = results("c", "running", Counts(total=10, sent=10, delivered=8, replied=2, response_seconds=263.4))
    assert (body["reply_rate"], body["reply_rate_value"]) == ("25.0%", 0.25)
    assert (body["average_response_time"], body["average_response_time_seconds"]) == ("4m 23s", 263.4)
    none = results("c", "draft", Counts())
    assert (none["reply_rate_value"], none["average_response_time_seconds"]) == (0.0, None)


def test_the_objects_checked_by_hand_name_their_unknown_keys_too():
    assert voice_errors({"language": "en-GB", "voice": "alice", "opening_message": "Hi"}) == []
    assert voice_errors({"call_duration_limt": 60, "call_duration_limit": 5}) == [
        {"field": "voice.call_duration_limt", "reason": "unknown field (did you mean `call_duration_limit`?)"},
        {"field": "voice.call_duration_limit", "reason": CALL_LIMIT_REASON},
    ]
    assert CALL_LIMIT_REASON.startswith("must be a whole number of seconds, 10 to 14400")
    assert voice_errors({"call_duration_limit": "5m"}) == []
    assert unknown_key_errors("recurrence", {"frequency": "weekly", "weekday": ["mon"]}, RECURRENCE_KEYS) == [
        {"field": "recurrence.weekday", "reason": "unknown field (did you mean `weekdays`?)"}
    ]


def test_a_call_duration_limit_takes_the_durations_retry_interval_takes():
    assert [parse_call_duration_limit(v) for v in (120, "120", "90s", "5m", "5 min", "1h", 10, 14400)] == [
        120, 120, 90, 300, 300, 3600, 10, 14400]
    for bad in (9, 14401, "5h", "9s", "soon", "", 1.5, True, None):
        with pytest.raises(ValueError, match=r"10 to 14400|not a duration"):
            parse_call_duration_limit(bad)


class _Plain(BaseModel):
    name: Name
    code: Annotated[str, StringConstraints(min_length=3, max_length=5)] = "abc"
    hour: int = Field(default=0, ge=0, le=23)
    batch: int = Field(default=1, gt=0)
    tags: list[str] = Field(default_factory=list, min_length=1, max_length=2)
    on: bool = False
    mode: Literal["off", "hangup", "voicemail"] = "off"


@pytest.mark.parametrize(("given", "field", "reason"), [
    ({"name": "x", "hour": 25}, "hour", "must be at most 23"),
    ({"name": "x", "hour": -1}, "hour", "must be at least 0"),
    ({"name": "x", "batch": 0}, "batch", "must be more than 0"),
    ({"name": "   "}, "name", "must not be empty"),
    ({"name": "x" * 201}, "name", "must be at most 200 characters"),
    ({"name": "x", "code": "ab"}, "code", "must be at least 3 characters"),
    ({"name": "x", "tags": []}, "tags", "must not be empty"),
    ({"name": "x", "tags": ["a", "b", "c"]}, "tags", "must be at most 2 items"),
    ({}, "name", "required"),
    ({"name": "x", "hour": "soon"}, "hour", "must be a whole number"),
    ({"name": "x", "hour": 1.5}, "hour", "must be a whole number"),
    ({"name": "x", "on": "perhaps"}, "on", "must be true or false"),
    ({"name": 12}, "name", "must be a string"),
    ({"name": "x", "tags": "a"}, "tags", "must be a list"),
    ({"name": "x", "mode": "beep"}, "mode", "must be one of off, hangup, voicemail"),
])
def test_pydantic_errors_are_given_in_plain_words(given, field, reason):
    with pytest.raises(ValidationError) as caught:
        _Plain.model_validate(given)
    assert {"field": field, "reason": reason} in pydantic_details(caught.value)
