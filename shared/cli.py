"""`campaigns`: one command-line entry point for every service and for operators."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from shared.domain.times import iso
from shared.errors import Unreachable
from shared.logging import configure_logging
from shared.settings import Settings, live_secret_problems, live_url_problems, setting_problems


def _settings(service: str, **overrides: Any) -> Settings:
    """The settings from the environment; a bad one is an exit (code 1) naming each bad variable
    and why, before anything starts."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise click.ClickException("bad settings:\n  - " + "\n  - ".join(setting_problems(exc))) from None
    configure_logging(service, settings.log_format, settings.log_level)
    return settings


def _service_settings(service: str) -> Settings:
    """A service's settings; in live mode, an exit (code 1) naming every default, sample or short
    secret and an http CAMPAIGNS_PUBLIC_URL, before anything starts."""
    settings = _settings(service)
    problems = live_secret_problems(settings) + live_url_problems(settings)
    if problems:
        raise click.ClickException(
            "live mode (CAMPAIGNS_PROVIDERS=live) refuses to start with public or weak secrets or an insecure URL:"
            "\n  - " + "\n  - ".join(problems)
        )
    return settings


def _serve(service: Any) -> None:
    from shared.runtime import run_until_signalled

    asyncio.run(run_until_signalled(service))


#: An amount as an operator writes one: ASCII digits, then at most 4 decimals after a point.
_PLAIN_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]{1,4})?")
#: A count: ASCII digits only.
_PLAIN_COUNT = re.compile(r"[0-9]+")
F = TypeVar("F", bound=Callable[..., Any])


def _plain_amount(_ctx: click.Context, _param: click.Parameter, value: str) -> Decimal:
    """An amount in the price unit, written plainly: `25`, `25.5`, `0.0079`. Anything else is a
    usage error naming the argument (exit code 2): Decimal() alone would take `1e2`, `1_000`,
    `" 5"`, `+5`, `5.00000` and digits other than ASCII ones."""
    if not _PLAIN_AMOUNT.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not an amount: write digits, with at most 4 decimals after a '.' (e.g. 25 or 25.5)"
        )
    return Decimal(value)


def _balance_option(help_text: str) -> Callable[[F], F]:
    """`--balance AMOUNT`: a starting balance, 100 unless given (plain digits, at most 4 decimals)."""
    return click.option(
        "--balance", default="100", metavar="AMOUNT", callback=_plain_amount, show_default=True, help=help_text
    )


def _plain_count(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """A count of 1 or more, written as plain digits (int() alone would take `1_000` and `" 5"`)."""
    if not _PLAIN_COUNT.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a count: write digits, e.g. 100")
    if int(value) < 1:
        raise click.BadParameter(f"{value!r}: must be 1 or more")
    return int(value)


class _Commands(click.Group):
    """Every command: a database or broker that cannot be reached is one line saying which, where
    and the setting to check, and a refusal (an AppError: a bad value, an unknown account) one line
    saying why; exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from shared.errors import AppError

        try:
            return super().invoke(ctx)
        except Unreachable as exc:
            raise click.ClickException(str(exc)) from exc
        except AppError as exc:
            raise click.ClickException(exc.message) from None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise click.ClickException(
                f"cannot listen: {exc.strerror or exc} (another process holds the port? CAMPAIGNS_API_PORT,"
                " CAMPAIGNS_TRACKER_PORT, CAMPAIGNS_METRICS_PORT, CAMPAIGNS_SANDBOX_PORT choose them)"
            ) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
        mailbox = smtp.SandboxSmtp()  # GET /sandbox/emails on the Twilio port lists what SMTP received
        await asyncio.gather(run(settings, stop, mailbox), smtp.run(settings, stop, mailbox))

    _serve(both)


@main.command()
@click.option(
    "--name",
    default="Local",
    show_default=True,
    help="The account `up` uses (created on first run; later runs reuse it with a new key).",
)
@_balance_option("Its starting balance.")
def up(name: str, balance: Decimal) -> None:
    """Migrate, then run every service in this process (sandbox providers unless
    CAMPAIGNS_PROVIDERS=live), create an account and print the API's address and a ready API key."""
    from shared.up import run

    settings = _service_settings("up")
    _serve(lambda stop: run(settings, stop, name, balance))


@main.group()
def accounts() -> None:
    """Manage accounts."""


def _admin(action: Any) -> Any:
    """Run an operator's use case (shared.admin) on CAMPAIGNS_DATABASE_URL (its refusal, an unknown
    account or a bad amount, is one line and exit code 1: see _Commands)."""
    return asyncio.run(action(_settings("cli").database_url))


@accounts.command("create")
@click.option("--name", required=True, help="The account's name.")
@_balance_option("Starting balance (in the price unit, at most 4 decimals).")
@click.option("--timezone", default=None, help="Default time zone (IANA); default CAMPAIGNS_DEFAULT_TIMEZONE.")
def create_account(name: str, balance: Decimal, timezone: str | None) -> None:
    """Create an account and print `{"account_id": …, "api_key": …}` (the key is shown only once)."""
    from shared.admin import create_account as create

    zone = timezone or _settings("cli").default_timezone
    account_id, key = _admin(lambda url: create(url, name, balance, zone))
    click.echo(json.dumps({"account_id": account_id, "api_key": key}))


@accounts.command("list")
def list_accounts() -> None:
    """Print every account, oldest first, one JSON object a line: `{"account_id", "name",
    "balance", "reserved" (held by launched campaigns), "default_timezone", "keys" (live API keys),
    "created_at"}`."""
    from shared.admin import list_accounts as listed

    for account in _admin(listed):
        click.echo(json.dumps(account))


@accounts.command("credit", context_settings={"ignore_unknown_options": True})  # "-5" is an amount (refused)
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("amount", callback=_plain_amount)
def credit(account_id: str, amount: Decimal) -> None:
    """Add AMOUNT (in the price unit, above 0: digits with at most 4 decimals, e.g. 25.5) to
    ACCOUNT's balance (acct_…), e.g. after a payment or for a sandbox's next campaigns. Prints
    `{"account_id", "balance"}` (the new one)."""
    from shared.admin import credit as add

    balance = _admin(lambda url: add(url, account_id, amount))
    click.echo(json.dumps({"account_id": account_id, "balance": str(balance)}))


@accounts.group("keys")
def keys() -> None:
    """An account's API keys: issue, list, revoke (stored hashed: a key is shown once)."""


@keys.command("create")
@click.argument("account_id", metavar="ACCOUNT")
def create_key(account_id: str) -> None:
    """Issue a new API key for ACCOUNT (its other keys keep working). Prints `{"account_id",
    "api_key", "prefix"}`; the key is shown only this once."""
    from shared.admin import create_key as issue

    key = _admin(lambda url: issue(url, account_id))
    click.echo(json.dumps({"account_id": account_id, "api_key": key, "prefix": key[:8]}))


@keys.command("list")
@click.argument("account_id", metavar="ACCOUNT")
def list_keys(account_id: str) -> None:
    """Print ACCOUNT's API keys, oldest first, one JSON object a line: `{"prefix", "created_at",
    "revoked_at"}` (null while the key works). The keys themselves are not stored."""
    from shared.admin import list_keys as listed

    for key in _admin(lambda url: listed(url, account_id)):
        click.echo(json.dumps(key))


@keys.command("revoke")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("key", metavar="KEY")
def revoke_key(account_id: str, key: str) -> None:
    """Revoke one of ACCOUNT's API keys, named by the whole KEY or by its prefix (as `keys list`
    shows it). It stops working at once: the API answers 401, and dashboard sessions signed in
    with it end. Prints `{"prefix", "created_at", "revoked_at"}`."""
    from shared.admin import revoke_key as revoke

    click.echo(json.dumps(_admin(lambda url: revoke(url, account_id, key))))


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
        summary = asyncio.run(  # (a refusal, an AppError, is one line: see _Commands)
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
    click.echo(json.dumps(summary.as_dict()))


_QUEUE_HELP = "The queue whose dead letters to act on, without CAMPAIGNS_AMQP_PREFIX (e.g. dispatch.sms)."


def _queue_option(required: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    from shared.bus.topology import QUEUES

    return click.option("--queue", "queue", type=click.Choice(sorted(QUEUES)), required=required, help=_QUEUE_HELP)


def _with_dlq(action: Any) -> Any:
    """Run `action(channel, prefix)` on a channel of its own; a broker error exits 1, saying what."""
    from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

    from shared.bus import dlq as dead

    settings = _settings("cli")

    async def run() -> Any:
        async with dead.channel(settings.amqp_url) as channel:
            return await action(channel, settings.amqp_prefix)

    try:
        return asyncio.run(run())
    except ChannelNotFoundEntity as exc:
        raise click.ClickException(
            f"{exc.args[-1] if exc.args else exc}: no such queue under CAMPAIGNS_AMQP_PREFIX "
            f"{settings.amqp_prefix!r} (a service declares them when it starts)"
        ) from None
    except (AMQPError, OSError, ConnectionError) as exc:
        raise click.ClickException(f"RabbitMQ ({settings.amqp_url.rsplit('@', 1)[-1]}): {exc!r}") from None


@main.group()
def dlq() -> None:
    """Dead-letter queues: what died and why, and sending it back or dropping it.

    Every queue has a dead-letter queue `<queue>.dlq` (under CAMPAIGNS_AMQP_PREFIX) where a message
    goes when its consumer rejects it (undecodable) or it failed too often. Replaying a message
    that was already handled is harmless: the consumers are idempotent.
    """


@dlq.command("list")
@_queue_option(required=False)
@click.option(
    "--limit",
    default="100",
    metavar="N",
    callback=_plain_count,
    show_default=True,
    help="Most messages listed with --queue.",
)
def dlq_list(queue: str | None, limit: int) -> None:
    """Count the messages of every dead-letter queue; with --queue, a line per message: its id,
    type, why it died and when."""
    from shared.bus import dlq as dead

    async def action(channel: Any, prefix: str) -> Any:
        if queue is None:
            return await dead.counts(channel, prefix)
        letters = []
        async for message in dead.take(channel, prefix, queue):
            letters.append(dead.dead_letter(message))
            if len(letters) >= limit:
                break
        return letters

    found = _with_dlq(action)
    if queue is None:
        click.echo(f"{'DEAD-LETTER QUEUE':<40} MESSAGES")
        for name, count in found.items():
            click.echo(f"{name + '.dlq':<40} {count}")
        return
    click.echo(f"{'ID':<38} {'TYPE':<22} {'DIED':<20} WHY")
    for letter in found:
        click.echo(f"{letter.id:<38} {letter.type:<22} {iso(letter.died_at) or '?':<20} {letter.reason}")
    if not found:
        click.echo(f"({queue}.dlq is empty)")


@dlq.command("show")
@_queue_option(required=True)
@click.option("--id", "message_id", required=True, help="The message's id, as `dlq list --queue` shows it.")
def dlq_show(queue: str, message_id: str) -> None:
    """Print one dead letter: why it died, its headers and its body (it stays where it is)."""
    from shared.bus import dlq as dead

    async def action(channel: Any, prefix: str) -> Any:
        async for message in dead.take(channel, prefix, queue):
            letter = dead.dead_letter(message)
            if letter.id == message_id:
                return letter
        return None

    letter = _with_dlq(action)
    if letter is None:
        raise click.ClickException(f"no message {message_id!r} in {queue}.dlq")
    click.echo(f"id:     {letter.id}\ntype:   {letter.type}\nwhy:    {letter.reason}")
    click.echo(f"died:   {iso(letter.died_at) or '?'} in {letter.queue or queue}")
    click.echo("headers:\n" + json.dumps(letter.headers, indent=2, default=str))
    try:
        body = json.dumps(json.loads(letter.body), indent=2)
    except ValueError:
        body = letter.body.decode("utf-8", errors="replace")
    click.echo("body:\n" + body)


@dlq.command("replay")
@_queue_option(required=True)
@click.option("--id", "ids", multiple=True, help="Replay only this message (repeatable); default: every one.")
def dlq_replay(queue: str, ids: tuple[str, ...]) -> None:
    """Send dead letters back to their queue, to be handled again (a message already handled is a
    no-op there). Exit code 1 when an --id is not found."""
    from shared.bus import dlq as dead

    done = _with_dlq(lambda channel, prefix: dead.replay(channel, prefix, queue, ids))
    for letter in done:
        click.echo(f"replayed {letter.id} ({letter.type}) to {queue}")
    click.echo(f"{len(done)} replayed")
    _all_found(queue, ids, done)


@dlq.command("purge")
@_queue_option(required=True)
@click.option("--id", "ids", multiple=True, help="Drop only this message (repeatable); default: every one.")
@click.option("--yes", is_flag=True, help="Yes, drop them: they are gone for good.")
def dlq_purge(queue: str, ids: tuple[str, ...], yes: bool) -> None:
    """Drop dead letters for good (asks for --yes). Exit code 1 when an --id is not found."""
    from shared.bus import dlq as dead

    if not yes:
        raise click.UsageError(f"purging drops messages of {queue}.dlq for good: add --yes")
    done = _with_dlq(lambda channel, prefix: dead.purge(channel, prefix, queue, ids))
    for letter in done:
        click.echo(f"dropped {letter.id} ({letter.type})")
    click.echo(f"{len(done)} dropped")
    _all_found(queue, ids, done)


def _all_found(queue: str, ids: tuple[str, ...], done: list[Any]) -> None:
    missing = sorted(set(ids) - {letter.id for letter in done})
    if missing:
        raise click.ClickException(f"not in {queue}.dlq: {', '.join(missing)}")


if __name__ == "__main__":
    sys.exit(main())
