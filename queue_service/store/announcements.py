"""What workers hear from each other and from the API: cancelled tasks, queues added,
paused or resumed, freed slots of shared concurrency limits and routes cooling down after
their upstream asked for a pause (Redis pub/sub)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .keys import Keys

CONFIRM_TIMEOUT = 5.0


class Topic(enum.Enum):
    TASK_CANCELLED = enum.auto()
    """Subject: the task id; its worker stops it."""
    QUEUES_CHANGED = enum.auto()
    """Subject: the queue's name; workers look at the registry again."""
    SLOT_FREED = enum.auto()
    """Subject: the limit's name; its waiters ask again."""
    ROUTE_COOLING = enum.auto()
    """Subject: `<route>|<until ms>`; no worker sends that route anything till then."""


@dataclass(frozen=True, slots=True)
class Announcement:
    topic: Topic
    subject: str


class Announcements:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._topics = {
            keys.cancel_channel: Topic.TASK_CANCELLED,
            keys.new_queue_channel: Topic.QUEUES_CHANGED,
            keys.limit_released_channel: Topic.SLOT_FREED,
            keys.cooldown_channel: Topic.ROUTE_COOLING,
        }

    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[AsyncIterator[Announcement]]:
        """Listen (subscription confirmed) for as long as the context lasts."""
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(*self._topics)
            confirmed = 0
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                while confirmed < len(self._topics):
                    message = await pubsub.get_message(timeout=CONFIRM_TIMEOUT)
                    if message is not None and message["type"] == "subscribe":
                        confirmed += 1
            yield self._announcements(pubsub)

    async def _announcements(self, pubsub: PubSub) -> AsyncIterator[Announcement]:
        async for message in pubsub.listen():
            if message["type"] == "message":
                topic = self._topics[message["channel"].decode()]
                yield Announcement(topic, message["data"].decode())
