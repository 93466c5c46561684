"""Where the service may send callbacks: only public unicast addresses, unless
`QUEUE_CALLBACK_ALLOWED_NETWORKS` opens a range (SSRF). `DENIED` is the one list of what is
refused, modelled on a trusted egress proxy's defaults (Stripe's Smokescreen): private,
loopback, link-local, carrier-grade NAT (where some clouds keep their metadata service),
documentation, benchmarking, reserved and multicast ranges, and the IPv6 ranges that embed
or tunnel to IPv4 (6to4, NAT64, Teredo, IPv4-compatible). An IPv4-mapped IPv6 address is
judged as the IPv4 address it maps.

A callback URL is checked when it is put and again at delivery, on the addresses its host
resolves to then (DNS rebinding); delivery then connects to the address it checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from queue_service.errors import UnsafeDestination

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED: dict[str, str] = {
    "0.0.0.0/8": "this network",
    "10.0.0.0/8": "private",
    "100.64.0.0/10": "carrier-grade NAT (cloud metadata such as 100.100.100.200)",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local (cloud metadata such as 169.254.169.254)",
    "172.16.0.0/12": "private",
    "192.0.0.0/24": "IETF protocol assignments",
    "192.0.2.0/24": "documentation (TEST-NET-1)",
    "192.88.99.0/24": "6to4 relay anycast",
    "192.168.0.0/16": "private",
    "198.18.0.0/15": "benchmarking",
    "198.51.100.0/24": "documentation (TEST-NET-2)",
    "203.0.113.0/24": "documentation (TEST-NET-3)",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved (and broadcast)",
    "::/128": "unspecified",
    "::1/128": "loopback",
    "::/96": "IPv4-compatible (embeds IPv4)",
    "64:ff9b::/96": "NAT64 (embeds IPv4)",
    "64:ff9b:1::/48": "local-use NAT64 (embeds IPv4)",
    "100::/64": "discard-only",
    "2001::/32": "Teredo (tunnels to IPv4)",
    "2001:2::/48": "benchmarking",
    "2001:10::/28": "ORCHID",
    "2001:20::/28": "ORCHIDv2",
    "2001:db8::/32": "documentation",
    "2002::/16": "6to4 (embeds IPv4)",
    "fc00::/7": "unique local (cloud metadata such as fd00:ec2::254)",
    "fe80::/10": "link-local",
    "fec0::/10": "site-local",
    "ff00::/8": "multicast",
}
"""Every range callbacks may not reach by default: network -> what it is."""

_DENIED = tuple((ipaddress.ip_network(net), kind) for net, kind in DENIED.items())
_CACHE_SECONDS = 60.0


def parse_networks(text: str | None) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks (ValueError names the bad entry)."""
    networks = []
    for part in (text or "").split(","):
        if part.strip():
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked callback target: the URL to connect to (host replaced by the checked
    address) and the original host for the Host header and TLS name."""

    url: str
    host: str


class CallbackPolicy:
    def __init__(self, allowed: tuple[IPNetwork, ...] = ()) -> None:
        self.allowed = allowed
        self._resolved: dict[str, tuple[float, list[IPAddress]]] = {}
        self._verdicts: dict[str, tuple[float, str | None]] = {}

    async def allows(self, url: str) -> None:
        """UnsafeDestination unless the URL may be called back (verdicts cached per host and
        port)."""
        parts = urlsplit(url)
        try:
            host = f"{parts.hostname}:{parts.port}"
        except ValueError as exc:  # put validation refuses these; never a 500 all the same
            raise UnsafeDestination(f"callback_url has an invalid port: {exc}") from None
        hit = self._verdicts.get(host)
        if hit is None or hit[0] <= time.monotonic():
            try:
                await self.check(url)
                refusal = None
            except UnsafeDestination as exc:
                refusal = str(exc)
            hit = (time.monotonic() + _CACHE_SECONDS, refusal)
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            self._verdicts[host] = hit
        if hit[1] is not None:
            raise UnsafeDestination(hit[1])

    def refusal(self, address: IPAddress) -> str | None:
        """What the address is when callbacks may not reach it, else None."""
        if any(address in network for network in self.allowed):
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return self.refusal(address.ipv4_mapped)
        return next((kind for network, kind in _DENIED if address in network), None)

    def address_allowed(self, address: IPAddress) -> bool:
        return self.refusal(address) is None

    async def check(self, url: str, *, cached: bool = True) -> Destination:
        """Resolve the URL's host, refuse it if any address is off limits, pin the first."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        addresses = await self._resolve(host, parts.port, cached)
        for address in addresses:
            kind = self.refusal(address)
            if kind is not None:
                raise UnsafeDestination(
                    f"callback_url host {host!r} resolves to {address}, a {kind} address, "
                    "refused for callbacks (QUEUE_CALLBACK_ALLOWED_NETWORKS can open it)"
                )
        address = addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        return Destination(urlunsplit(parts._replace(netloc=netloc)), parts.netloc)

    async def _resolve(self, host: str, port: int | None, cached: bool) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        hit = self._resolved.get(host)
        if cached and hit is not None and hit[0] > time.monotonic():
            return hit[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port or 80, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UnsafeDestination(f"callback_url host {host!r} does not resolve: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        self._resolved[host] = (time.monotonic() + _CACHE_SECONDS, addresses)
        return addresses
