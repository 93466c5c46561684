"""Token buckets shared by every API process: a burst, then the rate."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from queue_service.store import Keys, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("queue_service.store.buckets.now_ms", fake)
    return fake


async def test_a_burst_then_the_wait_for_the_next_token(store: Store, clock: Clock) -> None:
    assert [await store.buckets.take("key-1", rate=2, burst=3) for _ in range(3)] == [0, 0, 0]
    assert await store.buckets.take("key-1", rate=2, burst=3) == 500
    clock.now += 490
    assert 0 < await store.buckets.take("key-1", rate=2, burst=3) <= 11  # not quite there
    clock.now += 10
    assert await store.buckets.take("key-1", rate=2, burst=3) == 0


async def test_tokens_refill_up_to_the_burst_only(store: Store, clock: Clock) -> None:
    for _ in range(2):
        await store.buckets.take("key-1", rate=10, burst=2)
    clock.now += 60_000
    assert [await store.buckets.take("key-1", rate=10, burst=2) for _ in range(3)] == [0, 0, 100]


async def test_keys_have_buckets_of_their_own(store: Store, clock: Clock) -> None:
    assert await store.buckets.take("key-1", rate=1, burst=1) == 0
    assert await store.buckets.take("key-1", rate=1, burst=1) == 1000
    assert await store.buckets.take("key-2", rate=1, burst=1) == 0


async def test_an_idle_bucket_expires(
    store: Store, clock: Clock, redis: Redis, prefix: str
) -> None:
    await store.buckets.take("key-1", rate=1, burst=5)
    ttl = await redis.pttl(Keys(prefix).rate_bucket("key-1"))
    assert 5_000 < ttl <= 6_000  # a full bucket's worth of time, and a second
