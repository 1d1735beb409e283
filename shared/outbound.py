"""Outbound HTTP to URLs our users give (agents' webhooks and LLM endpoints; later, signed
webhooks): only to public addresses, checked where the connection is made.

A URL's host is resolved, and every address it resolves to must be a public one: private,
loopback, link-local, multicast, unspecified, reserved and cloud-metadata addresses are refused
(IPv4 and IPv6, IPv4-mapped, 6to4 and NAT64 forms read as the IPv4 address they carry) unless they
are inside `CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS`. The check sits in the session's connector, on the
very addresses it connects to (no second lookup for a rebinding DNS to answer differently), and
the session follows no redirects, times out, and reads a bounded answer (`read_json`).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services that sit on otherwise ordinary addresses (the link-local and private
#: ones, 169.254.169.254, fd00:ec2::254, 100.100.100.200, are refused as such anyway).
METADATA = frozenset(ipaddress.ip_address(a) for a in ("168.63.129.16", "169.254.169.254", "fd00:ec2::254"))
#: Largest answer read from an outbound request, in bytes.
MAX_RESPONSE = 1024 * 1024
#: Seconds an outbound request may take in all, and to connect.
TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(Exception):
    """A URL we do not send requests to (its address, its scheme, its answer)."""


def _carried(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _kind(address: Address) -> str | None:
    """What makes `address` not a public one (None: it is)."""
    for kind, flag in (
        ("a cloud metadata", address in METADATA),
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a reserved", address.is_reserved),
        ("a private", address.is_private),
        ("a non-public", not address.is_global),  # shared (100.64.0.0/10), documentation, …
    ):
        if flag:
            return kind
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses outbound requests may reach: public ones, and those in `allow`."""

    allow: tuple[Network, ...] = ()

    def refusal(self, host: str) -> str | None:
        """Why an IP address (text) may not be reached, or None when it may."""
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a zone index (fe80::1%eth0) is no part of it
        carried = _carried(address)
        if any(a in network for a in {address, carried} for network in self.allow if network.version == a.version):
            return None
        kind = _kind(carried)
        if kind is None:
            return None
        return f"{host} is {kind} address (CAMPAIGNS_OUTBOUND_ALLOW_NETWORKS allows chosen networks)"

    async def check_url(self, url: str) -> None:
        """OutboundRefused when `url` is not http(s) or its host resolves to an address we do not
        reach. A host that does not resolve (now) passes: the connection checks it again."""
        host = _host(url)
        literal = unquote(host).split("%", 1)[0]  # an address with a zone index (`[::1%25lo]`) resolves nowhere
        try:
            address = ipaddress.ip_address(literal)
        except ValueError:
            pass
        else:
            reason = self.refusal(str(address))
            if reason is not None:
                raise OutboundRefused(reason)
            return
        try:
            infos = await ThreadedResolver().resolve(host, 0, socket.AF_UNSPEC)
        except OSError:
            return
        self.check(infos)

    def check(self, infos: Sequence[ResolveResult]) -> None:
        """OutboundRefused when one of the addresses a lookup gave is not to be reached."""
        for info in infos:
            reason = self.refusal(info["host"])
            if reason is not None:
                raise OutboundRefused(reason if info["host"] == info["hostname"] else f"{info['hostname']}: {reason}")


def _host(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{url!r} is not an http(s) URL with a host")
    return parts.hostname


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that connects only to the addresses its policy allows, checked on the
    result of the lookup it connects with (IP literals included)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__()
        self._policy = policy

    # aiohttp's one funnel from a host name (or an IP literal) to the addresses it connects to
    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        infos = await super()._resolve_host(host, port, traces=traces)
        self._policy.check(infos)
        return infos


def session(policy: OutboundPolicy) -> aiohttp.ClientSession:
    """An HTTP client for user-given URLs: only the addresses `policy` allows, no redirects
    (`read_json` refuses a 3xx), `TIMEOUT`, no proxy from the environment."""
    return aiohttp.ClientSession(connector=_GuardedConnector(policy), timeout=TIMEOUT, trust_env=False)


async def post_json(
    client: aiohttp.ClientSession, url: str, payload: Any, headers: dict[str, str] | None = None
) -> Any:
    """POST `payload` as JSON to `url` and return the JSON answer (at most MAX_RESPONSE bytes);
    OutboundRefused for a URL we do not reach, a redirect or an answer too large;
    aiohttp's errors for an HTTP error status or a failed connection."""
    _host(url)
    async with client.post(url, json=payload, headers=headers or {}, allow_redirects=False) as response:
        if 300 <= response.status < 400:
            raise OutboundRefused(f"{url} answered a redirect ({response.status}): redirects are not followed")
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_RESPONSE:
                raise OutboundRefused(f"{url} answered more than {MAX_RESPONSE:,} bytes")
    return json.loads(body)
