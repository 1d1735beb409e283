"""Dead letters are an operator's tool (issue 10): `campaigns dlq list|show|replay|purge` on real
dead-lettered messages (a command the system already handled, rejected into the dead-letter
queue by the broker; an undecodable one, rejected by a real dispatcher). Replaying the handled
command is a no-op: nothing is sent twice."""

from __future__ import annotations

import json
import re

import aio_pika
import pytest

from shared.bus import topology
from tests.integration.test_cli_and_migrations import campaigns
from tests.support import Service, call, new_phone, wait_until

pytestmark = pytest.mark.e2e


def _keys(queue: str) -> tuple[str, ...]:
    """The routing keys `queue` is bound with (one, or every version still read)."""
    keys = topology.QUEUES[queue][1]
    return keys if isinstance(keys, tuple) else (keys,)


async def _count(channel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    return declared.declaration_result.message_count or 0


async def test_dead_letters_are_listed_shown_replayed_without_a_second_send_and_purged(
    http, system, account, fake_twilio, infra, tmp_path
):
    ours = system.env["CAMPAIGNS_AMQP_PREFIX"] + "dlqdrill."  # queues no other service reads
    cli_env = {"CAMPAIGNS_AMQP_URL": infra.amqp_url, "CAMPAIGNS_AMQP_PREFIX": ours}
    connection = await aio_pika.connect(infra.amqp_url)
    async with connection:
        channel = await connection.channel()
        copies = await channel.declare_queue(exclusive=True)
        dispatch = await channel.get_exchange(system.env["CAMPAIGNS_AMQP_PREFIX"] + "dispatch")
        for key in _keys("dispatch.sms"):
            await copies.bind(dispatch, key)  # a copy of every SMS command the system publishes
        await topology.declare(channel, ours)
        dispatcher = Service("dlq-dispatcher", ["dispatcher", "--channel", "sms"],
                             {**system.env, "CAMPAIGNS_AMQP_PREFIX": ours}, tmp_path)
        try:
            # Given an SMS the system sent and had delivered
            phone = new_phone()
            _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
            status, campaign = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                          {"name": "dlq", "type": "sms", "agent_id": agent["id"], "contacts": [phone],
                                           "message_template": "once", "status": "scheduled"})
            assert status == 201, campaign

            async def delivered():
                _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{campaign['id']}/results",
                                   account.headers)
                return r["delivered"] == 1

            await wait_until(delivered, timeout=60)
            command = await wait_until(lambda: copies.get(fail=False), timeout=10, message="the command's copy")
            # ...and that very command dead-lettered by the broker (rejected), and an undecodable one
            # rejected by a real dispatcher
            queue = await channel.get_queue(ours + "dispatch.sms")
            await channel.default_exchange.publish(
                aio_pika.Message(command.body, message_id=command.message_id, type=command.type,
                                 content_type=command.content_type), routing_key=ours + "dispatch.sms")
            taken = await wait_until(lambda: queue.get(fail=False), timeout=10)
            await taken.reject(requeue=False)
            await channel.default_exchange.publish(aio_pika.Message(b"\x00not json", message_id="garbage-1"),
                                                   routing_key=ours + "dispatch.sms")
            dispatcher.start()

            async def dead(n: int) -> bool:
                return await _count(channel, ours + "dispatch.sms.dlq") == n

            await wait_until(lambda: dead(2), timeout=30, message="two dead letters")

            # When the operator looks
            listed = campaigns("dlq", "list", env=cli_env)
            assert listed.returncode == 0, listed.stderr
            assert [line.split() for line in listed.stdout.splitlines() if "dispatch.sms.dlq" in line] == [
                ["dispatch.sms.dlq", "2"]]
            lines = campaigns("dlq", "list", "--queue", "dispatch.sms", env=cli_env).stdout.splitlines()
            real = next(line for line in lines if line.startswith(command.message_id))
            assert command.type in real
            assert "rejected by its consumer" in real
            assert re.search(r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", real), real  # when it died, as the API writes times
            garbage = next(line for line in lines if line.startswith("garbage-1"))
            assert "undecodable" in garbage
            shown = campaigns("dlq", "show", "--queue", "dispatch.sms", "--id", command.message_id, env=cli_env)
            assert shown.returncode == 0, shown.stderr
            assert json.loads(command.body)["campaign_id"] == campaign["id"]
            assert campaign["id"] in shown.stdout
            assert "x-death" in shown.stdout
            assert re.search(r"^died: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ in ", shown.stdout, re.M), shown.stdout
            assert campaigns("dlq", "show", "--queue", "dispatch.sms", "--id", "nope", env=cli_env).returncode == 1

            # Then replaying the handled command sends nothing again
            replayed = campaigns("dlq", "replay", "--queue", "dispatch.sms", "--id", command.message_id, env=cli_env)
            assert replayed.returncode == 0, replayed.stderr
            assert "1 replayed" in replayed.stdout
            # ...and replaying the undecodable one puts it back where it was (rejected again)
            assert "1 replayed" in campaigns("dlq", "replay", "--queue", "dispatch.sms", env=cli_env).stdout
            await wait_until(lambda: dead(1), timeout=30, message="the undecodable one dead again")
            assert dispatcher.stop() == 0  # drains: every command it held is handled and acknowledged
            assert await _count(channel, ours + "dispatch.sms") == 0
            assert len(fake_twilio.sent_to(phone)) == 1
            _s, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign['id']}/results",
                                     account.headers)
            assert (results["sent"], results["delivered"], results["failed"]) == (1, 1, 0)
            again = campaigns("dlq", "list", "--queue", "dispatch.sms", env=cli_env).stdout
            assert "garbage-1" in again
            assert "(2 times)" in again

            missing = campaigns("dlq", "replay", "--queue", "dispatch.sms", "--id", "nope", env=cli_env)
            assert missing.returncode == 1
            assert "not in dispatch.sms.dlq: nope" in missing.stderr
            refused = campaigns("dlq", "purge", "--queue", "dispatch.sms", env=cli_env)
            assert refused.returncode == 2
            assert "--yes" in refused.stderr
            assert await _count(channel, ours + "dispatch.sms.dlq") == 1
            purged = campaigns("dlq", "purge", "--queue", "dispatch.sms", "--yes", env=cli_env)
            assert purged.returncode == 0, purged.stderr
            assert "1 dropped" in purged.stdout
            assert await _count(channel, ours + "dispatch.sms.dlq") == 0
        finally:
            dispatcher.stop()
            await topology.delete(channel, ours)


def test_the_dlq_commands_help_and_check_their_queue():
    for command in (["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "replay"], ["dlq", "purge"]):
        result = campaigns(*command, "--help", env={})
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage:" in result.stdout
    unknown = campaigns("dlq", "replay", "--queue", "dispatch.fax", env={})
    assert unknown.returncode == 2
    assert "dispatch.sms" in unknown.stderr  # the choices are named
