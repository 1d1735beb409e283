"""`campaigns`: one command-line entry point for every service and for operators."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from shared.logging import configure_logging
from shared.settings import Settings, live_secret_problems


def _settings(service: str, **overrides: Any) -> Settings:
    settings = Settings(**overrides)
    configure_logging(service, settings.log_format, settings.log_level)
    return settings


def _service_settings(service: str) -> Settings:
    """A service's settings; in live mode, an exit (code 1) naming every default, sample or short
    secret, before anything starts."""
    settings = _settings(service)
    problems = live_secret_problems(settings)
    if problems:
        raise click.ClickException(
            "live mode (CAMPAIGNS_PROVIDERS=live) refuses to start with public or weak secrets:\n  - "
            + "\n  - ".join(problems)
        )
    return settings


def _serve(service: Any) -> None:
    from shared.runtime import run_until_signalled

    asyncio.run(run_until_signalled(service))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Outbound campaigns over SMS, email and voice.

    Every setting comes from the environment (CAMPAIGNS_DATABASE_URL, CAMPAIGNS_AMQP_URL, …; see the
    README). Run `campaigns up` to start everything with sandbox providers.
    """


@main.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations (idempotent, concurrency-safe)."""
    from shared.db.migrate import migrate as run_migrations

    settings = _settings("migrate")
    applied = asyncio.run(run_migrations(settings.database_url))
    click.echo(json.dumps({"applied": [f"{m.version:04d}_{m.name}" for m in applied]}))


@main.command()
def api() -> None:
    """Serve the HTTP API on CAMPAIGNS_API_HOST:CAMPAIGNS_API_PORT (default 127.0.0.1:8080)."""
    from services.api.app import run

    settings = _service_settings("api")
    _serve(lambda stop: run(settings, stop))


@main.command()
def scheduler() -> None:
    """Plan each contact's send time and release due deliveries to the dispatch queues."""
    from services.scheduler.app import run

    settings = _service_settings("scheduler")
    _serve(lambda stop: run(settings, stop))


@main.command()
@click.option(
    "--channel",
    type=click.Choice(["sms", "email", "voice"]),
    required=True,
    help="Queue to consume: dispatch.<channel>.",
)
def dispatcher(channel: str) -> None:
    """Send one channel's messages under each campaign's max_concurrent (run as many as you like)."""
    from services.dispatcher.app import run

    settings = _service_settings(f"dispatcher-{channel}")
    _serve(lambda stop: run(settings, channel, stop))


@main.command()
def tracker() -> None:
    """Serve provider webhooks on CAMPAIGNS_TRACKER_HOST:CAMPAIGNS_TRACKER_PORT (default :8081)."""
    from services.tracker.app import run

    settings = _service_settings("tracker")
    _serve(lambda stop: run(settings, stop))


@main.command()
def sandbox() -> None:
    """Serve the sandbox providers alone: Twilio on CAMPAIGNS_SANDBOX_PORT (default 8082) and SMTP on
    CAMPAIGNS_SANDBOX_SMTP_PORT (default 8025)."""
    from shared.sandbox import smtp
    from shared.sandbox.run import run

    settings = _settings("sandbox")

    async def both(stop: asyncio.Event) -> None:
        await asyncio.gather(run(settings, stop), smtp.run(settings, stop))

    _serve(both)


@main.command()
@click.option(
    "--name",
    default="Local",
    show_default=True,
    help="The account `up` uses (created on first run; later runs reuse it with a new key).",
)
@click.option("--balance", default="100", show_default=True, help="Its starting balance.")
def up(name: str, balance: str) -> None:
    """Migrate, then run every service in this process (sandbox providers unless
    CAMPAIGNS_PROVIDERS=live), create an account and print the API's address and a ready API key."""
    from shared.up import run

    settings = _service_settings("up")
    _serve(lambda stop: run(settings, stop, name, Decimal(balance)))


@main.group()
def accounts() -> None:
    """Manage accounts."""


@accounts.command("create")
@click.option("--name", required=True, help="The account's name.")
@click.option("--balance", default="100", show_default=True, help="Starting balance (in the price unit).")
@click.option("--timezone", default=None, help="Default time zone (IANA); default CAMPAIGNS_DEFAULT_TIMEZONE.")
def create_account(name: str, balance: str, timezone: str | None) -> None:
    """Create an account and print `{"account_id": …, "api_key": …}` (the key is shown only once)."""
    try:
        amount = Decimal(balance)
    except InvalidOperation:
        raise click.BadParameter(f"{balance!r} is not a number", param_hint="--balance") from None
    from shared.up import create_account as create

    settings = _settings("cli")
    account_id, key = asyncio.run(create(settings, name, amount, timezone or settings.default_timezone))
    click.echo(json.dumps({"account_id": account_id, "api_key": key}))


@main.group()
def contacts() -> None:
    """Manage contacts."""


@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--account", "account_id", required=True, help="The account to import into (acct_…).")
@click.option("--group", "group_id", default=None, help="Also add every imported contact to this group (grp_…).")
@click.option("--country", default=None, help="Region of phones written without '+', e.g. US.")
@click.option("--encoding", default="utf-8", show_default=True, help="The file's text encoding.")
def import_contacts(file: Path, account_id: str, group_id: str | None, country: str | None, encoding: str) -> None:
    """Import contacts from a CSV FILE straight into the database (CAMPAIGNS_DATABASE_URL).

    Cells may be separated by `,`, `;`, tab or `|`: the one the header line uses. Shows progress
    on stderr and prints the summary as JSON on stdout: {"rows", "created", "updated",
    "duplicates", "rejected", "errors": [{"line", "field", "reason"}], ...}.
    """
    import codecs

    from shared.contact_import import import_file
    from shared.domain.contacts import region
    from shared.errors import AppError

    try:
        country = region(country) if country else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--country") from None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise click.BadParameter(f"{encoding!r} is not an encoding", param_hint="--encoding") from None
    settings = _settings("cli")
    with click.progressbar(length=file.stat().st_size, label="importing", file=sys.stderr, show_pos=False) as bar:
        try:
            summary = asyncio.run(
                import_file(
                    settings.database_url,
                    account_id,
                    file,
                    group_id=group_id,
                    country=country,
                    encoding=encoding,
                    on_read=bar.update,
                )
            )
        except AppError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(json.dumps(summary.as_dict()))


if __name__ == "__main__":
    sys.exit(main())
