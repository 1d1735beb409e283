"""Settings, read from the environment once at start-up and passed down (never read elsewhere)."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.domain.breaker import Thresholds
from shared.domain.zones import is_valid_zone


class Settings(BaseSettings):
    """Every setting of every service; the README's table lists each one."""

    model_config = SettingsConfigDict(env_prefix="CAMPAIGNS_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/campaigns"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: Prefix for every exchange and queue name (isolates test runs and side-by-side installs).
    amqp_prefix: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    tracker_host: str = "127.0.0.1"
    tracker_port: int = Field(default=8081, ge=1, le=65535)
    #: Address and port of /healthz and /metrics for the scheduler and dispatchers (port 0: a free one).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: The tracker's base URL as providers reach it (status callbacks, signature checks); unset:
    #: the tracker's own address (host and port as set, a wildcard host read as 127.0.0.1).
    public_url: str = "http://127.0.0.1:8081"
    providers: Literal["sandbox", "live"] = "sandbox"
    twilio_account_sid: str = Field(
        default="ACsandbox00000000000000000000000000",  # live mode refuses it
        validation_alias=AliasChoices("TWILIO_ACCOUNT_SID"),
    )
    twilio_auth_token: SecretStr = Field(
        default=SecretStr("sandbox-auth-token"),
        validation_alias=AliasChoices("TWILIO_AUTH_TOKEN"),
    )
    twilio_api_url: str = "https://api.twilio.com"
    default_from_number: str = "+15005550006"
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = Field(default=8082, ge=1, le=65535)
    #: Email: the SMTP relay (in sandbox mode, when unset, the sandbox SMTP server on 127.0.0.1).
    smtp_host: str = "localhost"
    #: None: aiosmtplib's default for the TLS mode (465 with `tls`, 587 with `starttls`, else 25).
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: `none`, `starttls` (required) or `tls` (implicit, port 465); unset: STARTTLS when offered.
    smtp_tls: Literal["none", "starttls", "tls"] | None = None
    #: SMTP connections per email dispatcher (each carries one message at a time).
    smtp_pool_size: int = Field(default=4, ge=1)
    #: Sender address when an email campaign names none.
    default_from_email: str = "campaigns@localhost"
    sandbox_smtp_port: int = Field(default=8025, ge=1, le=65535)
    #: Signs unsubscribe links; required in live mode (a fixed development key in sandbox mode).
    secret_key: SecretStr | None = None
    #: Bearer token of `POST /webhooks/email/inbound` (bounces and replies). Unset: a fixed token in
    #: sandbox mode, the endpoint off in live mode.
    inbound_email_token: SecretStr | None = None
    default_timezone: str = "Asia/Kolkata"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    #: Unacknowledged commands a dispatcher holds at once (each carries up to CAMPAIGNS_RELEASE_BATCH
    #: deliveries of one campaign; only what a campaign's room and the capacity allow is claimed).
    dispatch_prefetch: int = Field(default=64, ge=1)
    #: Provider requests one dispatcher may have in flight at once, across its campaigns (its HTTP
    #: connection pool is this size; email: at most CAMPAIGNS_SMTP_POOL_SIZE).
    dispatch_capacity: int = Field(default=200, ge=1)
    #: Seconds a Twilio request may take before it is treated as unknown.
    provider_timeout: float = Field(default=15.0, gt=0)
    #: Seconds after which a delivery still `sending` is checked with the provider (crash, timeout).
    reconcile_after: float = Field(default=60.0, gt=0)
    #: Seconds after a send (doubling after each check) before a missing delivery receipt is asked
    #: for at the provider (a lost status callback); 0 turns the lookups off.
    receipt_after: float = Field(default=600.0, ge=0)
    #: Lookups of one missing receipt before it is left as it is (some carriers never report).
    receipt_checks: int = Field(default=3, ge=0)
    #: Seconds a voice call rings before it counts as no-answer (Twilio `Timeout`).
    call_ring_timeout: int = Field(default=30, ge=1)
    #: A voice call's longest duration in seconds when its campaign sets no `call_duration_limit`.
    call_time_limit: int = Field(default=300, ge=1)
    #: How often the scheduler looks for due deliveries, in seconds (it is also woken when a
    #: campaign's queue drains or a run's first contacts are planned).
    release_interval: float = Field(default=0.5, gt=0)
    #: Most deliveries of one campaign per send command.
    release_batch: int = Field(default=100, ge=1)
    #: Seconds of sends a campaign may have waiting in its dispatch queue (at its recent rate; at
    #: least twice its max_concurrent).
    release_horizon: float = Field(default=2.0, gt=0)
    #: Seconds after which a delivery still `queued` (its send command lost: dead-lettered or purged)
    #: is planned again and released in a new command (never sent twice: a claim takes only a queued
    #: delivery). Longer than a campaign's queue can take to drain at its max_concurrent.
    requeue_after: float = Field(default=900.0, gt=0)
    #: Contacts planned per committed chunk (the first chunk of a run is smaller, so that its first
    #: sends start at once).
    plan_chunk: int = Field(default=1000, ge=1)
    #: The circuit breaker's defaults, for a campaign that does not set its own `circuit_breaker`:
    #: above these rates over its sends finished since launch or its last resume (once at least
    #: `breaker_min_sends` have), a campaign pauses itself. `breaker_enabled` false: off by default.
    breaker_enabled: bool = True
    breaker_failure_rate: float = Field(default=0.5, ge=0, le=1)
    breaker_bounce_rate: float = Field(default=0.1, ge=0, le=1)
    breaker_opt_out_rate: float = Field(default=0.05, ge=0, le=1)
    breaker_min_sends: int = Field(default=50, ge=1)
    #: Seconds between two looks of the scheduler's breaker at running campaigns.
    breaker_interval: float = Field(default=0.25, gt=0)
    #: Sends a second a sender identity makes when it sets no `max_per_second`, by kind: US
    #: toll-free numbers, 5-6 digit short codes, other numbers (long codes), email addresses. Held
    #: across every dispatcher replica and campaign; the platform's default sender is not paced.
    sender_rate_long_code: float = Field(default=1.0, gt=0)
    sender_rate_toll_free: float = Field(default=3.0, gt=0)
    sender_rate_short_code: float = Field(default=100.0, gt=0)
    sender_rate_email: float = Field(default=10.0, gt=0)
    #: Start the scheduler's clock at this instant instead of now (rehearsals, tests).
    clock_start: datetime | None = None
    #: Simulated seconds per real second, with CAMPAIGNS_CLOCK_START.
    clock_rate: float = Field(default=1.0, gt=0)
    #: The real instant at which the simulated clock reads CAMPAIGNS_CLOCK_START (default: start-up).
    clock_origin: datetime | None = None
    #: Largest CSV `POST /contacts/import` takes, in bytes (larger: 413).
    import_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    #: Imports one account may run at once, across API replicas (more: 429).
    import_concurrency: int = Field(default=1, ge=1)
    #: Days provider callbacks and handled-message records are kept (to recognise repeats), then deleted.
    retention_days: int = Field(default=30, ge=1)
    #: Outbound webhooks (the tracker sends them): a failed delivery is tried again after
    #: `webhook_retry_base` seconds, doubling to at most `webhook_retry_max`, for
    #: `webhook_retry_for` seconds after its event (then failed); an endpoint failing without a
    #: success for `webhook_disable_after` seconds is disabled, saying why.
    webhook_retry_base: float = Field(default=5.0, gt=0)
    webhook_retry_max: float = Field(default=3600.0, gt=0)
    webhook_retry_for: float = Field(default=3 * 86400.0, gt=0)
    webhook_disable_after: float = Field(default=3 * 86400.0, gt=0)
    #: Seconds one webhook request may take, and requests in flight at once per tracker.
    webhook_timeout: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=20, ge=1)
    #: Seconds between two rounds of the scheduler's retention job.
    retention_interval: float = Field(default=3600.0, gt=0)
    #: Networks that agents' webhooks and LLM endpoints may reach although they are not public
    #: (comma-separated CIDRs: tests, an on-premise model); empty: public addresses only.
    outbound_allow_networks: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()

    @field_validator("outbound_allow_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value

    @field_validator("log_level", "providers", "log_format", "smtp_tls", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("default_timezone")
    @classmethod
    def _a_zone(cls, value: str) -> str:
        if not is_valid_zone(value):
            raise ValueError(f"{value!r} is not an IANA time zone name (e.g. Asia/Kolkata)")
        return value

    @field_validator("public_url")
    @classmethod
    def _a_public_url(cls, value: str) -> str:
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://hooks.example.com")
        if "_" in url.hostname:
            raise ValueError(f"{url.hostname!r}: a host name with an underscore is refused by Twilio")
        return value.strip()

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"CAMPAIGNS_DB_POOL_MIN ({self.db_pool_min}) is above CAMPAIGNS_DB_POOL_MAX ({self.db_pool_max})"
            )
        return self

    @model_validator(mode="after")
    def _public_url_follows_the_tracker(self) -> Settings:
        # a tracker moved to another port still gets its callbacks, and checks their signatures
        if "public_url" not in self.model_fields_set:
            self.public_url = f"http://{reachable_host(self.tracker_host)}:{self.tracker_port}"
        return self


def setting_problems(exc: ValidationError) -> list[str]:
    """Each bad setting of a failed `Settings()`, by its environment variable and why, e.g.
    `CAMPAIGNS_API_PORT='abc': Input should be a valid integer` (a secret's value never shown)."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        field = Settings.model_fields.get(name)
        variable = name.upper() if name.upper().startswith("TWILIO_") else f"CAMPAIGNS_{name.upper()}"
        if not name:  # a check of several settings together (the pool's bounds)
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        secret = (field is not None and "Secret" in str(field.annotation)) or "TOKEN" in variable
        shown = "" if secret or "input" not in error else f"={error['input']!r}"
        problems.append(f"{variable}{shown}: {str(error['msg']).removeprefix('Value error, ')}")
    return problems


#: The unsubscribe-link key in sandbox mode when CAMPAIGNS_SECRET_KEY is unset (never for live use).
SANDBOX_SECRET_KEY = "campaigns-sandbox-development-key"  # noqa: S105 (public by design)
SANDBOX_INBOUND_EMAIL_TOKEN = "sandbox-inbound-email-token"  # noqa: S105 (public by design)


#: Shortest secret live mode takes (CAMPAIGNS_SECRET_KEY, the inbound email token, Twilio's token).
MIN_SECRET_BYTES = 32
#: Values that are public: the code's sandbox defaults, and the placeholders our deploy files and
#: the docs show. Compared without case; any value containing "change" and "me" (change-me,
#: CHANGE_ME, changeme) counts too.
SAMPLE_SECRETS = frozenset(
    {
        "sandbox-auth-token",
        SANDBOX_SECRET_KEY,
        SANDBOX_INBOUND_EMAIL_TOKEN,
        "test-auth-token",
        "secret",
        "password",
        "token",
    }
)
_SANDBOX_SID = "ACsandbox00000000000000000000000000"


def _sample(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in SAMPLE_SECRETS or bool(re.search(r"change[-_ ]?me", lowered))


def live_secret_problems(settings: Settings) -> list[str]:
    """What keeps `settings` from live mode: each default, sample or too-short secret, naming its
    setting (empty in sandbox mode, or when every secret is the operator's own)."""
    if settings.providers != "live":
        return []
    problems = []
    sid = settings.twilio_account_sid
    if sid == _SANDBOX_SID or not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        problems.append(f"TWILIO_ACCOUNT_SID {sid!r} is not a Twilio account SID (AC and 32 hex digits)")
    secrets = {
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "CAMPAIGNS_SECRET_KEY": settings.secret_key,
        "CAMPAIGNS_INBOUND_EMAIL_TOKEN": settings.inbound_email_token,
    }
    for name, secret in secrets.items():
        value = secret.get_secret_value() if secret is not None else ""
        if not value:
            if name != "CAMPAIGNS_INBOUND_EMAIL_TOKEN":  # unset, that one turns its endpoint off
                problems.append(f"{name} is not set")
        elif _sample(value):
            problems.append(f"{name} is a default or sample value, known to anyone: set your own")
        elif len(value.encode("utf-8")) < MIN_SECRET_BYTES:
            problems.append(f"{name} is shorter than {MIN_SECRET_BYTES} bytes")
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    if password and _sample(password):
        problems.append("CAMPAIGNS_SMTP_PASSWORD is a default or sample value, known to anyone: set your own")
    for name, url in (("CAMPAIGNS_DATABASE_URL", settings.database_url), ("CAMPAIGNS_AMQP_URL", settings.amqp_url)):
        if _sample(urlsplit(url).password or ""):
            problems.append(f"{name} carries a sample password (CHANGE_ME): set your own")
    return problems


def live_url_problems(settings: Settings) -> list[str]:
    """What keeps `settings` from live mode in its URLs: a CAMPAIGNS_PUBLIC_URL that is not https.
    Emails' List-Unsubscribe links are built from it, and RFC 8058 wants an HTTPS URI there; a
    loopback host (localhost, 127.0.0.0/8, ::1), which tests and peers on the same machine use, may
    stay http (empty in sandbox mode)."""
    url = urlsplit(settings.public_url)
    if settings.providers != "live" or url.scheme == "https" or _loopback(url.hostname or ""):
        return []
    return [
        f"CAMPAIGNS_PUBLIC_URL {settings.public_url!r} is not https: emails' one-click unsubscribe links are built"
        " from it and must be HTTPS (RFC 8058); http is taken only for a loopback host (localhost, 127.0.0.1, ::1)"
    ]


def _loopback(host: str) -> bool:
    """Whether `host` (as a URL names it) is this machine's loopback: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def reachable_host(host: str) -> str:
    """How this machine reaches a server listening on `host` (a wildcard: 127.0.0.1), URL-ready."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (compared, not bound)
    return f"[{host}]" if ":" in host else host


def smtp_address(settings: Settings) -> tuple[str, int | None]:
    """Where email goes: the settings, or the sandbox SMTP server when not live and no host is set."""
    if settings.providers == "sandbox" and "smtp_host" not in settings.model_fields_set:
        return "127.0.0.1", settings.sandbox_smtp_port
    return settings.smtp_host, settings.smtp_port


def secret_key(settings: Settings) -> bytes:
    """The key that signs unsubscribe links; a start-up error in live mode when it is not set."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode("utf-8")
    if settings.providers == "live":
        raise RuntimeError(
            "CAMPAIGNS_SECRET_KEY is not set: live mode needs it to sign unsubscribe links "
            "(use a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return SANDBOX_SECRET_KEY.encode("utf-8")


def twilio_base_url(settings: Settings) -> str:
    """Where the Twilio client sends requests: the setting, or the sandbox when not live and unset."""
    if settings.providers == "sandbox" and "twilio_api_url" not in settings.model_fields_set:
        return f"http://127.0.0.1:{settings.sandbox_port}"
    return settings.twilio_api_url


def inbound_email_token(settings: Settings) -> str | None:
    """The token `POST /webhooks/email/inbound` wants: the setting, else (sandbox mode only) a fixed
    one; None turns the endpoint off."""
    if settings.inbound_email_token is not None and settings.inbound_email_token.get_secret_value():
        return settings.inbound_email_token.get_secret_value()
    return SANDBOX_INBOUND_EMAIL_TOKEN if settings.providers == "sandbox" else None


def breaker_defaults(settings: Settings) -> Thresholds:
    """The circuit breaker's thresholds for a campaign that sets none."""
    return Thresholds(
        failure_rate=settings.breaker_failure_rate,
        opt_out_rate=settings.breaker_opt_out_rate,
        bounce_rate=settings.breaker_bounce_rate,
        min_sends=settings.breaker_min_sends,
        enabled=settings.breaker_enabled,
    )
