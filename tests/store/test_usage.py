"""Usage kept in Redis: summed per series over whole hours, per tenant, trimmed by expiry,
and all-time totals for the counters."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from queue_service.store import Store
from queue_service.store.usage import HOUR, UsageCounts, UsageSeries, hour_window

ALICE_CHAT = UsageSeries("alice", "chat", "gpt-4o", "default")
ALICE_BATCH = UsageSeries("alice", "batch", "gpt-4o", "openai")
BOB_CHAT = UsageSeries("bob", "chat", 'odd|model "name":é', "default")


async def test_a_window_sums_each_series_and_reads_only_the_tenants_asked_for(
    store: Store,
) -> None:
    now = time.time()
    await store.usage.record(ALICE_CHAT, UsageCounts(1, 10, 20, 5), now)
    await store.usage.record(ALICE_CHAT, UsageCounts(1, 1, 2, 0), now)
    await store.usage.record(ALICE_BATCH, UsageCounts(1), now)
    await store.usage.record(BOB_CHAT, UsageCounts(1, 3, 4, 0), now)

    alice = await store.usage.window(now - HOUR, now + 1, ["alice"])
    assert alice == {ALICE_CHAT: UsageCounts(2, 11, 22, 5), ALICE_BATCH: UsageCounts(1)}
    assert await store.usage.window(now - HOUR, now + 1, ["alice"], "batch") == {
        ALICE_BATCH: UsageCounts(1)
    }
    everyone = await store.usage.window(now - HOUR, now + 1)
    assert everyone == alice | {BOB_CHAT: UsageCounts(1, 3, 4, 0)}
    assert await store.usage.window(now - HOUR, now + 1, ["carol"]) == {}
    assert await store.usage.totals() == everyone


async def test_a_window_takes_whole_hours_and_only_those_kept(store: Store, redis: Redis) -> None:
    now = time.time()
    this_hour, _ = hour_window(now, now)
    await store.usage.record(ALICE_CHAT, UsageCounts(1, 1, 0, 0), now)
    await store.usage.record(ALICE_CHAT, UsageCounts(1, 100, 0, 0), now - 3 * HOUR)
    too_old = now - store.usage.retention_s - 2 * HOUR
    await store.usage.record(ALICE_CHAT, UsageCounts(1, 10_000, 0, 0), too_old)

    def tokens(found: dict[UsageSeries, UsageCounts]) -> int:
        return sum(counts.prompt_tokens for counts in found.values())

    assert tokens(await store.usage.window(this_hour, this_hour + 1)) == 1
    assert tokens(await store.usage.window(now - 3 * HOUR, now - 2 * HOUR)) == 100
    assert tokens(await store.usage.window(now - 2 * HOUR, now - HOUR)) == 0
    assert tokens(await store.usage.window(0, now + 365 * 24 * HOUR)) == 101
    assert (await store.usage.totals())[ALICE_CHAT].prompt_tokens == 10_101

    hour_key = store.keys.usage_hour("alice", int(now // HOUR))
    expected_expiry = this_hour + HOUR + store.usage.retention_s
    assert (
        abs(await redis.ttl(hour_key) - (expected_expiry - time.time())) <= 2
    )  # 6.2: no EXPIRETIME
    assert await redis.ttl(store.keys.usage_tenants) > store.usage.retention_s
    old_key = store.keys.usage_hour("alice", int(too_old // HOUR))
    assert not await redis.exists(old_key)
