"""Concurrency limits shared by every worker process (their slots are `store.leases`).

A slot is a lease, renewed while held; a worker that dies stops renewing and its slots come
back within `lease_ttl` seconds. Waiters queue by priority (online before offline, then oldest
first); a freed slot is announced to every worker so waiters ask again at once (and at least
every `ASK_INTERVAL` seconds anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import anyio

from queue_service.store.leases import Leases

from .routing import Limit

log = logging.getLogger("workers.limiter")

ASK_INTERVAL = 0.5
WAITER_TTL_MS = 5_000
_LEVEL_WEIGHT = 10**13  # a level outweighs any age in ms


class Limiter:
    def __init__(self, leases: Leases, lease_ttl: float = 30.0) -> None:
        self.leases = leases
        self.lease_ttl_ms = int(lease_ttl * 1000)
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
        freed = self._freed[limit.name]
        while True:
            freed.clear()
            if await self.leases.acquire(
                limit.name, limit.size, lease, score, self.lease_ttl_ms, WAITER_TTL_MS
            ):
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
            for limit in held:
                try:
                    renewed = await self.leases.renew(limit.name, lease, self.lease_ttl_ms)
                except Exception:
                    log.warning("could not renew %s for %s", limit.name, lease, exc_info=True)
                    continue
                if not renewed:
                    log.warning("lease %s on %s had expired before renewal", lease, limit.name)

    async def _let_go(self, limits: tuple[Limit, ...], held: list[Limit], lease: str) -> None:
        waiting = [limit.name for limit in limits if limit not in held]
        try:
            await self.leases.release([limit.name for limit in held], waiting, lease)
        except Exception:  # leases expire by themselves
            log.warning("could not release %s", lease, exc_info=True)
        for limit in held:
            self.released(limit.name)
