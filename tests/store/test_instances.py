"""Instance numbers are leases: unique among live processes, kept across a loss of Redis data."""

from __future__ import annotations

from redis.asyncio import Redis

from queue_service.store import Store
from queue_service.store.keys import Keys


async def test_a_lease_lost_with_redis_data_is_taken_again(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    store = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)
    number = await store.instance.claim()
    await redis.delete(Keys(prefix).instance_lease(number))  # Redis came back empty
    await store.instance.renew()
    assert store.instance.number == number
    assert await redis.pttl(Keys(prefix).instance_lease(number)) > 0


async def test_a_number_taken_by_another_process_meanwhile_is_given_up(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    first = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)
    second = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)
    number = await first.instance.claim()
    await redis.delete(Keys(prefix).instance_lease(number))
    await second.instance.claim(configured=None)
    # The second process drew at random; make it hold the first one's lost number.
    await redis.set(Keys(prefix).instance_lease(number), "someone-else", px=30_000)
    await first.instance.renew()
    assert first.instance.number != number
    assert first.ids.instance == first.instance.number
    assert await redis.get(Keys(prefix).instance_lease(first.instance.number)) is not None


async def test_live_processes_never_share_a_number(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    stores = [Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60) for _ in range(20)]
    numbers = [await store.instance.claim() for store in stores]
    assert len(set(numbers)) == len(numbers)
