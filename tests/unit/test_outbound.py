"""Which addresses outbound requests (agents' webhooks and LLM endpoints) may reach."""

from __future__ import annotations

import ipaddress

import pytest

from shared.outbound import OutboundPolicy, OutboundRefused
from shared.settings import Settings


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback"),
        ("127.255.0.9", "a loopback"),
        ("::1", "a loopback"),
        ("0.0.0.0", "an unspecified"),  # noqa: S104 (an address under test, nothing binds it)
        ("::", "an unspecified"),
        ("10.1.2.3", "a private"),
        ("172.16.0.1", "a private"),
        ("192.168.1.1", "a private"),
        ("fd12:3456::1", "a private"),
        ("169.254.169.254", "a cloud metadata"),
        ("fd00:ec2::254", "a cloud metadata"),
        ("168.63.129.16", "a cloud metadata"),
        ("100.100.100.200", "a non-public"),  # Alibaba's metadata, in the shared 100.64.0.0/10
        ("169.254.1.1", "a link-local"),
        ("fe80::1", "a link-local"),
        ("fe80::1%eth0", "a link-local"),
        ("224.0.0.1", "a multicast"),
        ("ff02::1", "a multicast"),
        ("240.0.0.1", "a reserved"),
        ("::ffff:127.0.0.1", "a loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "a cloud metadata"),
        ("2002:7f00:1::", "a loopback"),  # 6to4 carrying 127.0.0.1
        ("64:ff9b::a00:1", "a private"),  # NAT64 carrying 10.0.0.1
    ],
)
def test_addresses_that_are_not_public_are_refused(host, kind):
    reason = OutboundPolicy().refusal(host)
    assert reason is not None
    assert f"{host} is {kind} address" in reason


@pytest.mark.parametrize("host", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(host):
    assert OutboundPolicy().refusal(host) is None


def test_allowed_networks_pass_and_only_they():
    policy = OutboundPolicy((ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.8.0.0/16")))
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same address, mapped
    assert policy.refusal("10.8.3.4") is None
    assert policy.refusal("10.9.0.1") is not None
    assert policy.refusal("::1") is not None  # IPv6 loopback is another network
    assert policy.refusal("169.254.169.254") is not None


def test_the_setting_is_a_comma_separated_list_of_networks(monkeypatch):
    monkeypatch.setenv("CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS", " 127.0.0.0/8, ::1/128 ")
    assert Settings().outbound_allow_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    monkeypatch.setenv("CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS", "")
    assert Settings().outbound_allow_networks == ()
    monkeypatch.setenv("CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/8")
    with pytest.raises(ValueError, match="outbound_allow_networks"):
        Settings()


@pytest.mark.parametrize(
    "url",
    ["http://[::1%25lo]:9999/", "http://[::ffff:127.0.0.1%25lo]/x", "http://[fe80::1%25lo]/", "http://[::1%lo]/hook"],
)
async def test_an_address_with_a_zone_index_is_refused_before_any_lookup(url):
    # (it resolves nowhere, so a lookup would let it pass to the connection's own check)
    with pytest.raises(OutboundRefused, match=r"loopback|link-local"):
        await OutboundPolicy().check_url(url)
    await OutboundPolicy((ipaddress.ip_network("::1/128"), ipaddress.ip_network("127.0.0.0/8"),
                          ipaddress.ip_network("fe80::/10"))).check_url(url)  # allowed networks pass
