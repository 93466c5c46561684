"""Usage counted in memory and written in batches: summed per series and hour, kept when a
write fails, written whole by the next flush."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from queue_service.store import Keys, Store
from queue_service.store.usage import UsageCounts, UsageLedger, UsageSeries
from workers.usage_counter import UsageCounter

ALICE = UsageSeries("alice", "chat", "m", "default")


class FailingOnce(UsageLedger):
    """A ledger whose first write meets Redis away."""

    failed = False

    async def record_many(self, batch: dict[tuple[UsageSeries, int], UsageCounts]) -> None:
        if not self.failed:
            self.failed = True
            raise RedisConnectionError("Redis is away")
        await super().record_many(batch)


async def test_counts_are_summed_and_written_by_a_flush(redis: Redis, prefix: str) -> None:
    store = Store(redis, Keys(prefix), redis_url="", retention_s=60)
    counter = UsageCounter(store.usage)
    counter.add(ALICE, UsageCounts(1, 10, 5, 0))
    counter.add(ALICE, UsageCounts(1, 1, 2, 1))
    assert await store.usage.window(time.time() - 60, time.time() + 1) == {}  # not yet
    await counter.flush()
    window = await store.usage.window(time.time() - 60, time.time() + 1)
    assert window == {ALICE: UsageCounts(2, 11, 7, 1)}


async def test_counts_a_failed_write_held_go_with_the_next(redis: Redis, prefix: str) -> None:
    store = Store(redis, Keys(prefix), redis_url="", retention_s=60)
    counter = UsageCounter(FailingOnce(redis, Keys(prefix), 60))
    counter.add(ALICE, UsageCounts(1, 10, 0, 0))
    with pytest.raises(RedisConnectionError):
        await counter.flush()
    counter.add(ALICE, UsageCounts(1, 5, 0, 0))
    await counter.flush()
    window = await store.usage.window(time.time() - 60, time.time() + 1)
    assert window == {ALICE: UsageCounts(2, 15, 0, 0)}
