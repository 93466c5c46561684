"""Fixtures of the worker tests: a store on this test's prefix, an HTTP client, and a
subscriber to a task's event channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from redis.asyncio import Redis

from queue_service.store import Keys, Store
from queue_service.store.events import TaskEvent, decode

_END = b"x-end-of-test"
"""Published by the test after the events it waits for (not a task event kind)."""


class TaskChannel:
    """A task's event channel, subscribed before the worker publishes on it."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self.pubsub = redis.pubsub()
        self.received: list[TaskEvent] = []

    async def poll(self) -> list[TaskEvent]:
        """Every event published so far (what arrived within a moment of asking)."""
        while message := await self.pubsub.get_message(
            ignore_subscribe_messages=True, timeout=0.01
        ):
            self.received.append(decode(message["data"]))
        return self.received

    async def events(self) -> list[TaskEvent]:
        """Every event published before this call (once they have all arrived)."""
        await self.redis.publish(self.channel, _END)
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, "the end marker never arrived"
            if message["data"] == _END:
                return self.received
            self.received.append(decode(message["data"]))


@pytest.fixture
def store(redis: Redis, prefix: str, redis_url: str) -> Store:
    return Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


Listen = Callable[[str], AbstractAsyncContextManager[TaskChannel]]


@pytest.fixture
def listen(redis: Redis) -> Listen:
    """`async with listen(channel) as channel:` subscribed (confirmed) to `channel`."""

    @asynccontextmanager
    async def subscribed(name: str) -> AsyncIterator[TaskChannel]:
        channel = TaskChannel(redis, name)
        async with channel.pubsub:
            await channel.pubsub.subscribe(name)
            confirmation = await channel.pubsub.get_message(timeout=5)
            assert confirmation is not None
            assert confirmation["type"] == "subscribe"
            yield channel

    return subscribed
