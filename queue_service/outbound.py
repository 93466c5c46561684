"""Where the service may send callbacks: no loopback, private, link-local, multicast or
cloud-metadata addresses unless `QUEUE_CALLBACK_ALLOWED_NETWORKS` opens them (SSRF).

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

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
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
        """UnsafeDestination unless the URL may be called back (verdicts cached per host)."""
        host = urlsplit(url).hostname or ""
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

    def address_allowed(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed):
            return True
        return not (
            address in _METADATA
            or address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or (
                isinstance(address, ipaddress.IPv6Address)
                and address.ipv4_mapped is not None
                and not self.address_allowed(address.ipv4_mapped)
            )
        )

    async def check(self, url: str, *, cached: bool = True) -> Destination:
        """Resolve the URL's host, refuse it if any address is off limits, pin the first."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        addresses = await self._resolve(host, parts.port, cached)
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise UnsafeDestination(
                f"callback_url host {host!r} resolves to {refused[0]}, a loopback, private, "
                "link-local, multicast or metadata address; refused "
                "(QUEUE_CALLBACK_ALLOWED_NETWORKS can open it)"
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
