"""Live mode refuses to start with a default or sample secret (issue 10): each service command,
run as a process, exits non-zero naming the setting, before it connects to anything."""

from __future__ import annotations

import pytest

from tests.integration.test_cli_and_migrations import campaigns

#: Secrets an operator would set: nothing here is a default, a sample or short.
GOOD = {
    "CAMPAIGNS_PROVIDERS": "live",
    "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
    "TWILIO_AUTH_TOKEN": "f" * 32,
    "CAMPAIGNS_SECRET_KEY": "k" * 43,
    "CAMPAIGNS_INBOUND_EMAIL_TOKEN": "",
    # nowhere: a command that passed the check would fail to connect, not start
    "CAMPAIGNS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
    "CAMPAIGNS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TWILIO_AUTH_TOKEN": "sandbox-auth-token"}, "TWILIO_AUTH_TOKEN is a default or sample value"),
        ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN is a default or sample value"),  # unset: the default
        ({"TWILIO_ACCOUNT_SID": "ACsandbox00000000000000000000000000"}, "TWILIO_ACCOUNT_SID"),
        ({"CAMPAIGNS_SECRET_KEY": "change-me-in-production"}, "CAMPAIGNS_SECRET_KEY is a default or sample value"),
        ({"CAMPAIGNS_SECRET_KEY": "campaigns-sandbox-development-key"}, "CAMPAIGNS_SECRET_KEY is a default"),
        ({"CAMPAIGNS_SECRET_KEY": "short-but-mine"}, "CAMPAIGNS_SECRET_KEY is shorter than 32 bytes"),
        ({"CAMPAIGNS_SECRET_KEY": ""}, "CAMPAIGNS_SECRET_KEY is not set"),
        ({"CAMPAIGNS_INBOUND_EMAIL_TOKEN": "sandbox-inbound-email-token"}, "CAMPAIGNS_INBOUND_EMAIL_TOKEN is a"),
        ({"CAMPAIGNS_SMTP_PASSWORD": "CHANGE_ME"}, "CAMPAIGNS_SMTP_PASSWORD is a default or sample value"),
        ({"CAMPAIGNS_DATABASE_URL": "postgresql://campaigns:CHANGE_ME@127.0.0.1:1/x"}, "CAMPAIGNS_DATABASE_URL"),
    ],
)
def test_live_mode_with_a_public_secret_exits_naming_the_setting(change, named):
    env = {**GOOD, **change}
    if env["TWILIO_AUTH_TOKEN"] == "":
        env.pop("TWILIO_AUTH_TOKEN")
    result = campaigns("api", env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "live mode (CAMPAIGNS_PROVIDERS=live) refuses to start" in result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["tracker"], ["scheduler"], ["dispatcher", "--channel", "sms"], ["up"]])
def test_every_service_command_checks(command):
    result = campaigns(*command, env={**GOOD, "CAMPAIGNS_SECRET_KEY": "change-me-in-production"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "CAMPAIGNS_SECRET_KEY is a default or sample value" in result.stderr


def test_every_problem_is_named_at_once():
    result = campaigns("api", env={"CAMPAIGNS_PROVIDERS": "live", "CAMPAIGNS_SECRET_KEY": "change-me-in-production",
                                   "CAMPAIGNS_DATABASE_URL": GOOD["CAMPAIGNS_DATABASE_URL"]})
    assert result.returncode == 1
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "CAMPAIGNS_SECRET_KEY"):
        assert name in result.stderr


@pytest.mark.parametrize("command", [["api"], ["tracker"], ["dispatcher", "--channel", "email"], ["up"]])
def test_live_mode_refuses_an_http_public_url_off_this_machine(command):
    # List-Unsubscribe links are built from CAMPAIGNS_PUBLIC_URL, and RFC 8058 wants HTTPS there
    result = campaigns(*command, env={**GOOD, "CAMPAIGNS_PUBLIC_URL": "http://hooks.example.com"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "live mode (CAMPAIGNS_PROVIDERS=live) refuses to start" in result.stderr
    assert "CAMPAIGNS_PUBLIC_URL 'http://hooks.example.com' is not https" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["https://hooks.example.com", "http://localhost:8081", "http://127.0.0.1:8081",
                                 "http://[::1]:8081"])
def test_live_mode_takes_an_https_public_url_or_a_loopback_one(url):
    # passed the check, the command goes on to the database (nowhere here) and stops there
    result = campaigns("api", env={**GOOD, "CAMPAIGNS_PUBLIC_URL": url})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "refuses to start" not in result.stderr, result.stderr
    assert "cannot reach PostgreSQL" in result.stderr, result.stderr
