"""What workers hear: cancelled tasks, queues added, paused or resumed, and freed slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from queue_service.models import ResponseMode
from queue_service.store import Announcement, Keys, Store, Topic
from queue_service.store.announcements import Announcements

from . import put_request, submit

LEASE_TTL_MS = 10_000


async def next_of(announcements: AsyncIterator[Announcement]) -> Announcement:
    return await asyncio.wait_for(anext(announcements), 5)


async def test_a_cancel_is_announced_with_the_task_id(store: Store) -> None:
    submission = await submit(store)
    async with store.announcements.subscribed() as announcements:
        await store.tasks.cancel(submission.text_id, "alice")
        assert await next_of(announcements) == Announcement(
            Topic.TASK_CANCELLED, submission.text_id
        )


async def test_a_new_queue_is_announced_once(store: Store) -> None:
    async with store.announcements.subscribed() as announcements:
        await submit(store, put_request("alpha"))
        await submit(store, put_request("alpha"))
        await store.queues.id("beta")
        assert await next_of(announcements) == Announcement(Topic.QUEUES_CHANGED, "alpha")
        assert await next_of(announcements) == Announcement(Topic.QUEUES_CHANGED, "beta")


async def test_pause_and_resume_are_announced(store: Store) -> None:
    await store.queues.id("alpha")
    async with store.announcements.subscribed() as announcements:
        await store.queues.set_paused("alpha", True)
        await store.queues.set_paused("alpha", False)
        for _ in range(2):
            assert await next_of(announcements) == Announcement(Topic.QUEUES_CHANGED, "alpha")


async def test_a_released_slot_is_announced_with_the_limit(store: Store) -> None:
    assert await store.leases.acquire("gpu", 1, "lease-1", 0, LEASE_TTL_MS, LEASE_TTL_MS)
    async with store.announcements.subscribed() as announcements:
        await store.leases.release(["gpu"], ["api"], "lease-1")  # only held slots are freed
        assert await next_of(announcements) == Announcement(Topic.SLOT_FREED, "gpu")


async def test_every_topic_in_the_order_it_happened(store: Store) -> None:
    submission = await store.tasks.prepare(put_request("q", ResponseMode.CALLBACK), "t", 30)
    await store.tasks.submit(submission)
    async with store.announcements.subscribed() as announcements:
        await store.leases.release(["gpu"], [], "lease-1")
        await store.queues.id("new")
        await store.tasks.cancel(submission.text_id, "t")
        assert [await next_of(announcements) for _ in range(3)] == [
            Announcement(Topic.SLOT_FREED, "gpu"),
            Announcement(Topic.QUEUES_CHANGED, "new"),
            Announcement(Topic.TASK_CANCELLED, submission.text_id),
        ]


async def test_announcements_of_another_prefix_are_not_heard(
    store: Store, redis: Redis, prefix: str, redis_url: str
) -> None:
    neighbour = Store(redis, Keys(f"{prefix}:other"), redis_url=redis_url, retention_s=60)
    async with store.announcements.subscribed() as announcements:
        await neighbour.queues.id("theirs")
        await store.queues.id("ours")
        assert await next_of(announcements) == Announcement(Topic.QUEUES_CHANGED, "ours")


class SlowToSubscribe(Connection):
    """A connection whose SUBSCRIBE reaches Redis 0.2 s after it was sent (a slow network:
    a write returns once the bytes are on their way, not once Redis has them)."""

    in_transit: ClassVar[set[asyncio.Task[None]]] = set()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        parts = [command] if isinstance(command, bytes | str) else command
        head = b"".join(part.encode() if isinstance(part, str) else bytes(part) for part in parts)
        if b"SUBSCRIBE" not in head.upper():
            await super().send_packed_command(command, check_health)
            return
        send = super().send_packed_command

        async def arrive_later() -> None:
            await asyncio.sleep(0.2)
            await send(command, check_health)

        task = asyncio.create_task(arrive_later())
        self.in_transit.add(task)
        task.add_done_callback(self.in_transit.discard)


@pytest.fixture
async def slow_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, connection_class=SlowToSubscribe)
    yield client
    for task in SlowToSubscribe.in_transit:
        task.cancel()
    await asyncio.gather(*SlowToSubscribe.in_transit, return_exceptions=True)
    await client.aclose()


async def test_the_subscription_is_live_when_the_context_is_entered(
    slow_redis: Redis, redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    async with Announcements(slow_redis, keys).subscribed():
        channels = [keys.cancel_channel, keys.new_queue_channel, keys.limit_released_channel]
        assert await redis.pubsub_numsub(*channels) == [(c.encode(), 1) for c in channels]
