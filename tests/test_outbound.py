"""Where callbacks may go (queue_service/outbound.py): every range of `DENIED` refused, public
addresses allowed, IPv4-mapped IPv6 judged by its IPv4, `QUEUE_CALLBACK_ALLOWED_NETWORKS`
opening a range; and puts refusing such callback URLs end to end.

Only IP literals are used, so `check()` resolves nothing, and no worker runs: nothing here
ever connects to any of these addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.outbound import CallbackPolicy, UnsafeDestination, parse_networks
from queue_service.settings import Settings
from tests.helpers import put, put_body
from tests.servers import serve

RANGES: dict[str, tuple[str, list[str]]] = {
    "0.0.0.0/8": ("this network", []),
    "10.0.0.0/8": ("private", []),
    "100.64.0.0/10": ("carrier-grade NAT", ["100.100.100.200"]),
    "127.0.0.0/8": ("loopback", []),
    "169.254.0.0/16": ("link-local", ["169.254.169.254"]),
    "172.16.0.0/12": ("private", []),
    "192.0.0.0/24": ("IETF protocol assignments", ["192.0.0.8", "192.0.0.170"]),
    "192.0.2.0/24": ("documentation", []),
    "192.88.99.0/24": ("6to4 relay", []),
    "192.168.0.0/16": ("private", []),
    "198.18.0.0/15": ("benchmarking", []),
    "198.51.100.0/24": ("documentation", []),
    "203.0.113.0/24": ("documentation", []),
    "224.0.0.0/4": ("multicast", []),
    "240.0.0.0/4": ("reserved", ["255.255.255.255"]),
    "::/128": ("unspecified", []),
    "::1/128": ("loopback", []),
    "::/96": ("IPv4-compatible", ["::7f00:1", "::a9fe:a9fe"]),
    "64:ff9b::/96": ("NAT64", ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::808:808"]),
    "64:ff9b:1::/48": ("local-use NAT64", []),
    "100::/64": ("discard-only", []),
    "2001::/32": ("Teredo", ["2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
    "2001:2::/48": ("benchmarking", []),
    "2001:10::/28": ("ORCHID", []),
    "2001:20::/28": ("ORCHIDv2", []),
    "2001:db8::/32": ("documentation", []),
    "2002::/16": ("6to4", ["2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:808:808::"]),
    "fc00::/7": ("unique local", ["fd00:ec2::254"]),
    "fe80::/10": ("link-local", []),
    "fec0::/10": ("site-local", []),
    "ff00::/8": ("multicast", []),
}
"""Every range callbacks may not reach by default: a word its refusal names, and addresses
inside it that matter (cloud metadata services, IPv4 loopback and metadata embedded in 6to4,
NAT64 and IPv4-compatible addresses) besides its first, middle and last ones."""

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below carrier-grade NAT
    "100.128.0.0",  # just above it
    "198.17.255.255",  # just below benchmarking
    "198.20.0.0",  # just above it
    "223.255.255.255",  # just below multicast
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2003::1",  # just above 6to4
    "::ffff:8.8.8.8",  # IPv4-mapped: judged as 8.8.8.8
    "::ffff:100.128.0.0",
]


def url_of(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}/cb"


def inside(network: str) -> list[str]:
    """The network's first host, middle and last addresses, and its addresses that matter."""
    net = ipaddress.ip_network(network)
    first = net.network_address + (1 if net.num_addresses > 1 else 0)
    middle = net.network_address + net.num_addresses // 2
    found = dict.fromkeys(str(a) for a in (first, middle, net.broadcast_address))
    return [*found, *RANGES[network][1]]


def middle(network: str) -> str:
    net = ipaddress.ip_network(network)
    return str(net.network_address + net.num_addresses // 2)


async def refusal(policy: CallbackPolicy, address: str) -> str | None:
    """Why `check` refuses the address as a callback host, or None when it accepts it."""
    try:
        await policy.check(url_of(address))
    except UnsafeDestination as exc:
        return str(exc)
    return None


def test_denied_is_the_list_of_ranges_tested_here() -> None:
    from queue_service.outbound import DENIED

    assert set(DENIED) == set(RANGES)
    for network, (word, _) in RANGES.items():
        assert word in DENIED[network], network


@pytest.mark.parametrize("network", list(RANGES))
async def test_every_denied_range_is_refused(network: str) -> None:
    policy = CallbackPolicy()
    for address in inside(network):
        assert ipaddress.ip_address(address) in ipaddress.ip_network(network)
        reason = await refusal(policy, address)
        assert reason is not None, f"{address} ({network}) was allowed"
        assert address in reason
        assert not policy.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("network", list(RANGES))
async def test_a_refusal_says_what_the_range_is(network: str) -> None:
    reason = await refusal(CallbackPolicy(), middle(network))
    assert reason is not None
    assert f"a {RANGES[network][0]}" in reason


@pytest.mark.parametrize(
    "network", [network for network in RANGES if ipaddress.ip_network(network).version == 4]
)
async def test_an_ipv4_mapped_address_is_judged_by_its_ipv4(network: str) -> None:
    policy = CallbackPolicy()
    for address in inside(network):
        mapped = f"::ffff:{address}"
        assert await refusal(policy, mapped) is not None, f"{mapped} was allowed"


@pytest.mark.parametrize("address", PUBLIC)
async def test_public_addresses_are_allowed(address: str) -> None:
    policy = CallbackPolicy()
    assert await refusal(policy, address) is None
    assert policy.address_allowed(ipaddress.ip_address(address))
    destination = await policy.check(url_of(address) + "?x=1")  # pinned to the address
    pinned = urlsplit(destination.url)
    assert ipaddress.ip_address(pinned.hostname or "") == ipaddress.ip_address(address)
    assert (pinned.path, pinned.query) == ("/cb", "x=1")


@pytest.mark.parametrize(
    ("allowed", "address"),
    [
        ("100.64.0.0/10", "100.100.100.200"),
        ("100.64.0.0/10", "::ffff:100.100.100.200"),
        ("2002::/16", "2002:a9fe:a9fe::1"),
        ("64:ff9b::/96", "64:ff9b::a9fe:a9fe"),
        ("2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        ("198.18.0.0/15", "198.19.255.255"),
        ("240.0.0.0/4", "240.0.0.1"),
        ("127.0.0.1/32", "::ffff:127.0.0.1"),
        ("fc00::/7", "fd00:ec2::254"),
    ],
)
async def test_an_allowed_network_overrides_the_denied_ranges(allowed: str, address: str) -> None:
    assert await refusal(CallbackPolicy(), address) is not None
    opened = CallbackPolicy(parse_networks(allowed))
    assert await refusal(opened, address) is None
    # the rest stays closed
    assert await refusal(opened, "169.254.169.254") is not None
    assert await refusal(opened, "fe80::1") is not None


def test_the_allowed_networks_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_CALLBACK_ALLOWED_NETWORKS", "100.64.0.0/10, 2002::/16")
    networks = Settings().allowed_callback_networks
    assert networks == parse_networks("100.64.0.0/10,2002::/16")
    policy = CallbackPolicy(networks)
    assert policy.address_allowed(ipaddress.ip_address("100.100.100.200"))
    assert not policy.address_allowed(ipaddress.ip_address("10.0.0.1"))


# -- end to end: puts ---------------------------------------------------------------------


@pytest.fixture
async def strict_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the default outbound policy (no network opened)."""
    strict = Settings(**{**settings.model_dump(), "callback_allowed_networks": None})
    async with serve(create_app(strict)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    "address",
    [
        "100.100.100.200",
        "192.0.0.128",
        "192.88.99.1",
        "198.18.0.1",
        "240.0.0.1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "64:ff9b::a9fe:a9fe",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fec0::1",
        "::ffff:100.100.100.200",
    ],
)
async def test_a_put_with_a_callback_into_a_denied_range_is_refused(
    strict_api: httpx.AsyncClient, address: str
) -> None:
    response = await strict_api.post("/v1/queue/put", json=put_body("ssrf", url_of(address)))
    assert response.status_code == 400, response.text
    reason = response.json()["message"]
    assert "refused" in reason
    assert address in reason


async def test_a_put_with_a_callback_into_an_opened_range_is_accepted(settings: Settings) -> None:
    """(No worker runs: the job waits, its callback is never sent.)"""
    opened = Settings(**{**settings.model_dump(), "callback_allowed_networks": "100.64.0.0/10"})
    async with serve(create_app(opened)) as url, httpx.AsyncClient(base_url=url) as client:
        await put(client, put_body("ssrf", url_of("100.100.100.200")))
        refused = await client.post(
            "/v1/queue/put", json=put_body("ssrf", url_of("169.254.169.254"))
        )
    assert refused.status_code == 400
