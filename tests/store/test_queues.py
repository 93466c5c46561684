"""The queue registry: ids shared by every process, names back, groups, pause, tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from queue_service.store import Keys, Store, StreamReader
from queue_service.store.keys import CONSUMER_GROUP

from . import ALICE, listening, put_request, submit


@pytest.fixture
async def other(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    """A second process's store: its own connection, same Redis and prefix."""
    second = Store(Redis.from_url(redis_url), Keys(prefix), redis_url=redis_url, retention_s=60)
    yield second
    await second.aclose()


async def test_ids_are_stable_and_unique_per_name_across_processes(
    store: Store, other: Store
) -> None:
    names = ["alpha", "beta", "gamma"]
    ours, theirs = await asyncio.gather(
        asyncio.gather(*(store.queues.id(name) for name in names)),
        asyncio.gather(*(other.queues.id(name) for name in reversed(names))),
    )
    assert ours == list(reversed(theirs))
    assert len(set(ours)) == 3
    assert await store.queues.id("alpha") == ours[0]
    assert await other.queues.all() == dict(zip(names, ours, strict=True))


async def test_name_maps_an_id_back_in_another_process(store: Store, other: Store) -> None:
    queue_id = await store.queues.id("alpha")
    assert await other.queues.name(queue_id) == "alpha"
    assert await other.queues.name(queue_id + 1000) is None
    assert await other.queues.exists("alpha")
    assert not await other.queues.exists("beta")


async def test_a_new_queue_gets_both_level_streams_with_the_group(
    store: Store, redis: Redis, prefix: str
) -> None:
    await store.queues.id("alpha")
    for level in (0, 1):
        groups = await redis.xinfo_groups(Keys(prefix).stream("alpha", level))
        assert [group["name"] for group in groups] == [CONSUMER_GROUP.encode()]
    await submit(store, put_request("alpha"))  # a tenant's first put makes its lane
    groups = await redis.xinfo_groups(Keys(prefix).stream("alpha", 0, ALICE))
    assert [group["name"] for group in groups] == [CONSUMER_GROUP.encode()]


async def test_ensure_groups_is_idempotent_and_keeps_what_was_read(
    store: Store, redis: Redis, prefix: str
) -> None:
    await submit(store, put_request("alpha"))
    stream = Keys(prefix).stream("alpha", 0, ALICE)
    await redis.xreadgroup(CONSUMER_GROUP, "w", {stream: ">"}, count=1)
    await store.queues.ensure_groups("alpha")
    await store.queues.ensure_groups("alpha")
    (group,) = await redis.xinfo_groups(stream)
    assert group["pending"] == 1  # the group was not recreated
    assert await redis.xlen(stream) == 1


async def test_registering_a_queue_announces_it_once(
    store: Store, other: Store, redis: Redis, prefix: str
) -> None:
    channel = Keys(prefix).new_queue_channel
    async with listening(redis, channel) as next_message:
        await store.queues.id("alpha")
        await other.queues.id("alpha")  # known already: no announcement
        await store.queues.id("beta")
        assert await next_message() == (channel, b"alpha")
        assert await next_message() == (channel, b"beta")


async def test_pause_and_resume(store: Store, other: Store) -> None:
    await store.queues.id("alpha")
    assert not await store.queues.is_paused("alpha")
    await store.queues.set_paused("alpha", True)
    await store.queues.set_paused("alpha", True)
    assert await other.queues.is_paused("alpha")
    assert await other.queues.paused() == {"alpha"}
    await other.queues.set_paused("alpha", False)
    assert not await store.queues.is_paused("alpha")
    assert await store.queues.paused() == set()


async def test_a_paused_queue_still_accepts_jobs(store: Store) -> None:
    await store.queues.set_paused("alpha", True)
    submission = await submit(store, put_request("alpha"))
    assert await store.tasks.load("alpha", submission.text_id) is not None


async def test_used_by_the_tenants_that_submitted(store: Store) -> None:
    await store.queues.id("alpha")
    assert not await store.queues.used_by("alpha", "alice")
    await submit(store, put_request("alpha"), tenant="alice")
    assert await store.queues.used_by("alpha", "alice")
    assert not await store.queues.used_by("alpha", "bob")
    assert not await store.queues.used_by("beta", "alice")


async def test_groups_are_never_made_again_for_a_removed_queue(
    store: Store, redis: Redis, prefix: str
) -> None:
    await store.queues.id("gone-soon")
    assert await store.queues.remove_if_idle("gone-soon", 0)
    assert not await store.queues.ensure_groups("gone-soon")  # a late worker or stats read
    assert [key async for key in redis.scan_iter(match=f"{prefix}:{{gone-soon}}:*")] == []


async def test_a_removed_queue_leaves_nothing_in_the_scheduler(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    await submit(store, put_request("gone-soon"))
    pick = await store.scheduler.pick(0, 1, None)
    assert pick is not None
    (entry,) = await reader.read(pick.lane, 1)
    await store.tasks.ack(entry)
    await store.scheduler.settle(pick, 0)
    await redis.delete(Keys(prefix).task("gone-soon", entry.task_id))  # its record expired
    await redis.hset(Keys(prefix).queue_meta("gone-soon"), "expires_at", 0)
    assert await store.queues.remove_if_idle("gone-soon", 0)
    left = [
        (key, field)
        async for key in redis.scan_iter(match=f"{prefix}:{{sched}}:*")
        for field in (await redis.hkeys(key) if await redis.type(key) == b"hash" else [])
        if b"gone-soon" in field
    ]
    assert left == []
    assert await redis.zcard(Keys(prefix).active_lanes) == 0
