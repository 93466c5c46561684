"""Concurrency limits shared by every worker process, through Redis.

A slot is a lease in a sorted set, renewed while held; a worker that dies stops renewing and
its slots come back within `lease_ttl` seconds. Waiters queue in Redis by priority (online
before offline, then oldest first); a freed slot is announced on a pub/sub channel so waiters
ask again at once (and at least every `ASK_INTERVAL` seconds anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from importlib.resources import files

import anyio
from redis.asyncio import Redis

from queue_service.store.keys import Keys

from .routing import Limit

log = logging.getLogger("workers.limiter")

ASK_INTERVAL = 0.5
WAITER_TTL_MS = 5_000
_LEVEL_WEIGHT = 10**13  # a level outweighs any age in ms


def _script(name: str) -> str:
    return (files("queue_service.store.lua") / f"{name}.lua").read_text(encoding="utf-8")


class Limiter:
    def __init__(self, redis: Redis, keys: Keys, lease_ttl: float = 30.0) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self._acquire = redis.register_script(_script("limit_acquire"))
        self._freed: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def released(self, limit: str) -> None:
        """A slot of `limit` was freed (here or by another worker): waiters ask again."""
        self._freed[limit].set()

    @contextlib.asynccontextmanager
    async def hold(
        self, limits: tuple[Limit, ...], lease: str, level: int, created_ms: int
    ) -> AsyncIterator[None]:
        """Hold one slot of each limit, in order, for the duration of the block."""
        held: list[Limit] = []
        score = level * _LEVEL_WEIGHT + created_ms
        try:
            for limit in limits:
                await self._take(limit, lease, score)
                held.append(limit)
            async with self._renewing(held, lease):
                yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._let_go(limits, held, lease)

    async def _take(self, limit: Limit, lease: str, score: int) -> None:
        keys = [
            self.keys.limit_leases(limit.name),
            self.keys.limit_waiters(limit.name),
            self.keys.limit_waiter_expiry(limit.name),
        ]
        freed = self._freed[limit.name]
        while True:
            freed.clear()
            args: list[str | int] = [
                _now_ms(),
                limit.size,
                lease,
                score,
                self.lease_ttl_ms,
                WAITER_TTL_MS,
            ]
            if await self._acquire(keys=keys, args=args):
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ASK_INTERVAL):
                    await freed.wait()

    @contextlib.asynccontextmanager
    async def _renewing(self, held: list[Limit], lease: str) -> AsyncIterator[None]:
        if not held:
            yield
            return
        renewer = asyncio.create_task(self._renew(held, lease))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, held: list[Limit], lease: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_ms / 3000)
            expiry = _now_ms() + self.lease_ttl_ms
            for limit in held:
                try:
                    renewed = await self.redis.zadd(
                        self.keys.limit_leases(limit.name), {lease: expiry}, xx=True, ch=True
                    )
                except Exception:
                    log.warning("could not renew %s for %s", limit.name, lease, exc_info=True)
                    continue
                if not renewed:
                    log.warning("lease %s on %s had expired before renewal", lease, limit.name)

    async def _let_go(self, limits: tuple[Limit, ...], held: list[Limit], lease: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for limit in limits:
                if limit in held:
                    pipe.zrem(self.keys.limit_leases(limit.name), lease)
                    pipe.publish(self.keys.limit_released_channel, limit.name)
                else:  # stop waiting
                    pipe.zrem(self.keys.limit_waiters(limit.name), lease)
                    pipe.zrem(self.keys.limit_waiter_expiry(limit.name), lease)
            try:
                await pipe.execute()
            except Exception:  # leases expire by themselves
                log.warning("could not release %s", lease, exc_info=True)
        for limit in held:
            self.released(limit.name)


def _now_ms() -> int:
    return int(time.time() * 1000)
