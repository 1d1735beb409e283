"""Settings whose default depends on the mode: sandbox stand-ins, nothing silent in live mode."""

from __future__ import annotations

import pytest

from shared.settings import (
    SANDBOX_INBOUND_EMAIL_TOKEN,
    Settings,
    inbound_email_token,
    live_secret_problems,
    secret_key,
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
