"""Settings whose default depends on the mode: sandbox stand-ins, nothing silent in live mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import (
    SANDBOX_INBOUND_EMAIL_TOKEN,
    Settings,
    inbound_email_token,
    live_secret_problems,
    live_url_problems,
    secret_key,
    setting_problems,
)


@pytest.fixture(autouse=True)
def _no_campaigns_env(monkeypatch):
    for name in (
        "CAMPAIGNS_INBOUND_EMAIL_TOKEN", "CAMPAIGNS_PROVIDERS", "CAMPAIGNS_SECRET_KEY",
        "CAMPAIGNS_PUBLIC_URL", "CAMPAIGNS_TRACKER_HOST", "CAMPAIGNS_TRACKER_PORT", "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN", "CAMPAIGNS_SMTP_PASSWORD", "CAMPAIGNS_DATABASE_URL", "CAMPAIGNS_AMQP_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_the_inbound_email_token_is_the_setting_else_the_sandbox_one_else_off():
    assert inbound_email_token(Settings(inbound_email_token="s3cret")) == "s3cret"
    assert inbound_email_token(Settings(providers="live", inbound_email_token="s3cret")) == "s3cret"
    assert inbound_email_token(Settings()) == SANDBOX_INBOUND_EMAIL_TOKEN
    assert inbound_email_token(Settings(providers="live")) is None
    assert inbound_email_token(Settings(providers="live", inbound_email_token="")) is None


def test_live_mode_needs_its_own_secret_key():
    with pytest.raises(RuntimeError, match="CAMPAIGNS_SECRET_KEY"):
        secret_key(Settings(providers="live"))
    assert secret_key(Settings(providers="live", secret_key="k")) == b"k"


def test_the_public_url_is_the_setting_else_the_trackers_own_address(monkeypatch):
    assert Settings().public_url == "http://127.0.0.1:8081"
    assert Settings(tracker_port=9091).public_url == "http://127.0.0.1:9091"
    assert Settings(tracker_host="0.0.0.0", tracker_port=9091).public_url == "http://127.0.0.1:9091"  # noqa: S104
    assert Settings(tracker_host="::1").public_url == "http://[::1]:8081"
    assert Settings(tracker_port=9091, public_url="https://hooks.example.com").public_url == "https://hooks.example.com"
    monkeypatch.setenv("CAMPAIGNS_TRACKER_PORT", "9092")
    assert Settings().public_url == "http://127.0.0.1:9092"


def test_live_mode_takes_only_the_operators_own_secrets():
    own = {"twilio_account_sid": "AC" + "ab" * 16, "twilio_auth_token": "t" * 32, "secret_key": "s" * 32}
    assert live_secret_problems(Settings(providers="live", **own)) == []
    assert live_secret_problems(Settings(providers="live", **own, inbound_email_token="i" * 40)) == []
    assert live_secret_problems(Settings()) == []  # the sandbox takes its public defaults
    assert live_secret_problems(Settings(providers="live")) == [
        "TWILIO_ACCOUNT_SID 'ACsandbox00000000000000000000000000' is not a Twilio account SID (AC and 32 hex digits)",
        "TWILIO_AUTH_TOKEN is a default or sample value, known to anyone: set your own",
        "CAMPAIGNS_SECRET_KEY is not set",
    ]
    for sample in ("change-me-in-production", "CHANGE_ME", "ChangeMe-please-xxxxxxxxxxxxxxxxxxxxxxxx"):
        assert live_secret_problems(Settings(providers="live", **{**own, "secret_key": sample})) == [
            "CAMPAIGNS_SECRET_KEY is a default or sample value, known to anyone: set your own"]
    assert live_secret_problems(Settings(providers="live", **{**own, "inbound_email_token": "x" * 31})) == [
        "CAMPAIGNS_INBOUND_EMAIL_TOKEN is shorter than 32 bytes"]


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://hooks.example.com", False),
        ("http://hooks.example.com", True),
        ("http://203.0.113.7:8081", True),
        ("http://10.0.0.5:8081", True),  # private, but not this machine: an email's link leaves it
        ("http://localhost:8081", False),
        ("http://LOCALHOST", False),
        ("http://127.0.0.1:8081", False),
        ("http://127.8.9.10", False),
        ("http://[::1]:8081", False),
        ("http://[::ffff:127.0.0.1]:8081", False),
        ("http://localhost.example.com", True),
    ],
)
def test_live_mode_wants_an_https_public_url_but_on_loopback(url, refused):
    problems = live_url_problems(Settings(providers="live", public_url=url))
    assert bool(problems) is refused, problems
    if refused:
        assert problems == [
            f"CAMPAIGNS_PUBLIC_URL {url!r} is not https: emails' one-click unsubscribe links are built from it and"
            " must be HTTPS (RFC 8058); http is taken only for a loopback host (localhost, 127.0.0.1, ::1)"
        ]
    assert live_url_problems(Settings(public_url=url)) == []  # the sandbox takes any
    assert live_url_problems(Settings(providers="live")) == []  # unset: the tracker's own, on loopback


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CAMPAIGNS_API_PORT": "abc"}, "CAMPAIGNS_API_PORT='abc': Input should be a valid integer"),
        ({"CAMPAIGNS_TRACKER_PORT": "70000"}, "CAMPAIGNS_TRACKER_PORT='70000': Input should be less than or equal"),
        ({"CAMPAIGNS_RELEASE_BATCH": "0"}, "CAMPAIGNS_RELEASE_BATCH='0': Input should be greater than or equal to 1"),
        ({"CAMPAIGNS_DISPATCH_CAPACITY": "-1"}, "CAMPAIGNS_DISPATCH_CAPACITY='-1': Input should be greater than"),
        ({"CAMPAIGNS_DB_POOL_MAX": "0"}, "CAMPAIGNS_DB_POOL_MAX='0': Input should be greater than or equal to 1"),
        ({"CAMPAIGNS_DB_POOL_MIN": "20"}, "CAMPAIGNS_DB_POOL_MIN (20) is above CAMPAIGNS_DB_POOL_MAX (10)"),
        ({"CAMPAIGNS_LOG_LEVEL": "verbose"}, "CAMPAIGNS_LOG_LEVEL='verbose': Input should be 'debug', 'info'"),
        ({"CAMPAIGNS_DEFAULT_TIMEZONE": "Mars/Base"}, "'Mars/Base' is not an IANA time zone name"),
        ({"CAMPAIGNS_DEFAULT_TIMEZONE": "localtime"}, "'localtime' is not an IANA time zone name"),
        ({"CAMPAIGNS_PUBLIC_URL": "notaurl"}, "CAMPAIGNS_PUBLIC_URL='notaurl': 'notaurl' is not an http(s) URL"),
        ({"CAMPAIGNS_PUBLIC_URL": "http://my_tracker:8081"}, "'my_tracker': a host name with an underscore"),
        ({"CAMPAIGNS_SMTP_TLS": "ssl"}, "CAMPAIGNS_SMTP_TLS='ssl': Input should be 'none', 'starttls' or 'tls'"),
    ],
)
def test_a_bad_setting_is_named_with_why(monkeypatch, env, says):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert [p for p in setting_problems(raised.value) if says in p], setting_problems(raised.value)


def test_settings_in_any_case_and_secrets_never_shown(monkeypatch):
    monkeypatch.setenv("CAMPAIGNS_LOG_LEVEL", "INFO")
    monkeypatch.setenv("CAMPAIGNS_PROVIDERS", "Sandbox")
    assert (Settings().log_level, Settings().providers) == ("info", "sandbox")
    monkeypatch.setenv("CAMPAIGNS_SMTP_PASSWORD", "x" * 10)
    monkeypatch.setenv("CAMPAIGNS_API_PORT", "abc")
    with pytest.raises(ValidationError) as raised:
        Settings(smtp_password=["not", "a", "string"])
    problems = setting_problems(raised.value)
    assert any(p.startswith("CAMPAIGNS_SMTP_PASSWORD: ") for p in problems), problems  # no value shown
    assert not any("not" in p and "SMTP" in p for p in problems)
