"""A store on this test's own key prefix, and a worker's stream reader on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from queue_service.store import Keys, Store, StreamReader


@pytest.fixture
def store(redis: Redis, prefix: str, redis_url: str) -> Store:
    return Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)


@pytest.fixture
async def reader(store: Store) -> AsyncIterator[StreamReader]:
    """A worker's reader with a visibility timeout long enough never to matter."""
    running = store.stream_reader("worker-a", visibility_timeout=60)
    yield running
    await running.aclose()
