"""Slots of concurrency limits shared by every worker process: leases in sorted sets.

A lease expires unless renewed, so a worker that dies frees its slots by itself; waiters
queue by priority (see `lua/limit_acquire.lua`); a freed slot is announced to every worker.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from queue_service.timing import now_ms

from .keys import Keys
from .lua import LuaScripts

log = logging.getLogger("queue_service.store.leases")


class Leases:
    def __init__(self, redis: Redis, keys: Keys, lua: LuaScripts) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua

    async def acquire(
        self, limit: str, size: int, lease: str, score: int, lease_ttl_ms: int, waiter_ttl_ms: int
    ) -> bool:
        """Take one of `size` slots of `limit` if free and first in line; else wait in line."""
        keys = self._keys
        return await self._lua.limit_acquire(
            leases=keys.limit_leases(limit),
            waiters=keys.limit_waiters(limit),
            waiter_expiry=keys.limit_waiter_expiry(limit),
            now_ms=now_ms(),
            size=size,
            lease=lease,
            score=score,
            lease_ttl_ms=lease_ttl_ms,
            waiter_ttl_ms=waiter_ttl_ms,
        )

    async def renew(self, limit: str, lease: str, ttl_ms: int) -> bool:
        """Push a held lease's expiry on; False when it had expired already."""
        key = self._keys.limit_leases(limit)
        if await self._redis.zadd(key, {lease: now_ms() + ttl_ms}, xx=True, ch=True):
            return True
        return await self._redis.zscore(key, lease) is not None  # renewed within the same ms

    async def release(self, held: list[str], waiting: list[str], lease: str) -> None:
        """Give back the slots held and leave the lines still waited in (one round trip)."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for limit in held:
                pipe.zrem(keys.limit_leases(limit), lease)
                pipe.publish(keys.limit_released_channel, limit)
            for limit in waiting:
                pipe.zrem(keys.limit_waiters(limit), lease)
                pipe.zrem(keys.limit_waiter_expiry(limit), lease)
            await pipe.execute()
