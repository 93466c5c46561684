"""Worker heartbeats: who is alive, on which host, how busy (`queue-service workers`,
queue stats, metrics and `worker --check` read them)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from .keys import Keys

MIN_STALE_S = 15.0


class Heartbeats:
    """One hash, worker name -> its latest beat; a worker silent too long counts as gone."""

    def __init__(self, redis: Redis, keys: Keys, interval: float) -> None:
        self._redis = redis
        self._key = keys.workers
        self.stale_after = max(MIN_STALE_S, 5 * interval)

    async def beat(self, name: str, info: dict[str, Any]) -> None:
        """Record a worker's beat (`info` gets the time it was seen)."""
        beat = orjson.dumps({**info, "name": name, "seen_at": time.time()}).decode()
        await cast(Awaitable[int], self._redis.hset(self._key, name, beat))

    async def forget(self, name: str) -> None:
        """A worker that stops cleanly leaves at once."""
        await cast(Awaitable[int], self._redis.hdel(self._key, name))

    async def live(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is recent; stale entries (dead workers) are pruned."""
        raw = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._key))
        now = time.time()
        alive: list[dict[str, Any]] = []
        stale: list[str] = []
        for name, beat in raw.items():
            info = orjson.loads(beat)
            if now - info["seen_at"] < self.stale_after:
                alive.append(info)
            else:
                stale.append(name.decode())
        if stale:
            await cast(Awaitable[int], self._redis.hdel(self._key, *stale))
        return alive
