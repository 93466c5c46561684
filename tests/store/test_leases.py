"""Slots of shared concurrency limits: the size holds, waiters in priority order, renewals,
releases announced, and a dead holder's slot freed by expiry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from queue_service.store import Keys, Store
from queue_service.store.leases import Leases

from . import listening

Ask = Callable[..., Awaitable[bool]]
"""`ask(lease, score=0, size=2, limit="gpu")`: acquire a slot; False: wait in line."""

TTL = 10_000
WAITER_TTL = 5_000


class Clock:
    """The leases module's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("queue_service.store.leases.now_ms", fake)
    return fake


@pytest.fixture
def ask(store: Store, clock: Clock) -> Ask:
    leases: Leases = store.leases

    async def ask(lease: str, score: int = 0, size: int = 2, limit: str = "gpu") -> bool:
        return await leases.acquire(limit, size, lease, score, TTL, WAITER_TTL)

    return ask


async def holders(redis: Redis, prefix: str, limit: str = "gpu") -> list[str]:
    return [
        member.decode() for member in await redis.zrange(Keys(prefix).limit_leases(limit), 0, -1)
    ]


async def test_acquire_up_to_the_size(ask: Ask, redis: Redis, prefix: str) -> None:
    assert await ask("a")
    assert await ask("b")
    assert not await ask("c")
    assert sorted(await holders(redis, prefix)) == ["a", "b"]


async def test_limits_are_counted_apart(ask: Ask) -> None:
    assert await ask("a", size=1, limit="gpu")
    assert await ask("a", size=1, limit="api")
    assert not await ask("b", size=1, limit="gpu")


async def test_the_lowest_score_waiter_gets_the_next_slot(ask: Ask, store: Store) -> None:
    assert await ask("holder", size=1)
    assert not await ask("offline", score=2_000, size=1)
    assert not await ask("online", score=1_000, size=1)
    await store.leases.release(["gpu"], [], "holder")
    assert not await ask("offline", score=2_000, size=1)  # freed, but not its turn
    assert await ask("online", score=1_000, size=1)
    await store.leases.release(["gpu"], [], "online")
    assert await ask("offline", score=2_000, size=1)


async def test_a_newcomer_does_not_jump_the_line(ask: Ask, store: Store) -> None:
    assert await ask("holder", size=1)
    assert not await ask("waiter", score=10, size=1)
    await store.leases.release(["gpu"], [], "holder")
    assert not await ask("newcomer", score=20, size=1)
    assert await ask("waiter", score=10, size=1)


async def test_a_waiter_that_stops_asking_loses_its_place(
    ask: Ask, store: Store, clock: Clock
) -> None:
    assert await ask("holder", size=1)
    assert not await ask("gone", score=1, size=1)
    await store.leases.release(["gpu"], [], "holder")
    clock.now += WAITER_TTL + 1
    assert await ask("patient", score=2, size=1)


async def test_leaving_a_line_lets_the_next_waiter_in(ask: Ask, store: Store) -> None:
    assert await ask("holder", size=1)
    assert not await ask("first", score=1, size=1)
    assert not await ask("second", score=2, size=1)
    await store.leases.release([], ["gpu"], "first")  # gave up waiting
    await store.leases.release(["gpu"], [], "holder")
    assert await ask("second", score=2, size=1)


async def test_renew_pushes_the_expiry_on(
    ask: Ask, store: Store, clock: Clock, redis: Redis, prefix: str
) -> None:
    assert await ask("a", size=1)
    clock.now += TTL - 1
    assert await store.leases.renew("gpu", "a", TTL)
    assert await redis.zscore(Keys(prefix).limit_leases("gpu"), "a") == clock.now + TTL
    clock.now += TTL - 1  # past the first expiry, not the renewed one
    assert not await ask("b", size=1)


async def test_renew_of_an_expired_lease_fails(ask: Ask, store: Store, clock: Clock) -> None:
    assert await ask("a", size=1)
    clock.now += TTL + 1
    assert await ask("b", size=1)  # a's lease expired: b took the slot
    assert not await store.leases.renew("gpu", "a", TTL)
    assert not await store.leases.renew("gpu", "never-held", TTL)


async def test_renew_of_a_held_lease_succeeds_within_the_same_millisecond(
    ask: Ask, store: Store
) -> None:
    assert await ask("a", size=1)
    assert await store.leases.renew("gpu", "a", TTL)  # the clock has not moved


async def test_release_frees_the_slot_and_announces_it(
    ask: Ask, store: Store, redis: Redis, prefix: str
) -> None:
    channel = Keys(prefix).limit_released_channel
    assert await ask("a", size=1, limit="gpu")
    assert await ask("a", size=1, limit="api")
    async with listening(redis, channel) as next_message:
        await store.leases.release(["gpu", "api"], [], "a")
        assert {await next_message(), await next_message()} == {
            (channel, b"gpu"),
            (channel, b"api"),
        }
    assert await holders(redis, prefix, "gpu") == []
    assert await holders(redis, prefix, "api") == []
    assert await ask("b", size=1, limit="gpu")


async def test_a_dead_holders_slot_is_freed_by_expiry(ask: Ask, clock: Clock) -> None:
    assert await ask("dead", size=1)
    clock.now += TTL - 1
    assert not await ask("b", size=1)
    clock.now += 2
    assert await ask("b", size=1)
