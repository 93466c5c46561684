"""The scheduler: which lane a worker reads next, shared fairly between tenants and queues.

A lane is one tenant's stream of a queue at one level (see keys.py). A put marks its lane
ready (`lua/mark.lua`). A worker with room picks the next lane of a level (`lua/pick.lua`:
weighted fair queueing over the ready tenants, then over the tenant's ready queues, decided
in Redis so the shares hold across every worker process), reads up to its room from that one
stream, and settles a pick whose read came up short (`lua/settle.lua`: the lane leaves the
ready sets unless a put marked it meanwhile). Lanes without work are never read, so what a
worker does per job does not grow with the number of queues. Idle workers block on the
levels' wake lists (`StreamReader.wait_for_work`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from queue_service.timing import now_ms

from .keys import Keys, tenant_id
from .lua import LuaScripts

ACTIVE_PAGE = 256
"""Lanes read per page of the active set."""
MOST_LOOKS = 256
"""Most lanes one pick looks at (only a worker serving a few queues skips many)."""


@dataclass(frozen=True, slots=True)
class Lane:
    """One tenant's stream of a queue at one level."""

    queue: str
    level: int
    tenant: str = ""
    """The tenant's id (`keys.tenant_id`), "" for the no-auth tenant."""


@dataclass(frozen=True, slots=True)
class Pick:
    """A lane a worker may read, its share charged for `asked` entries."""

    lane: Lane
    mark: int
    asked: int


class Scheduler:
    def __init__(self, redis: Redis, keys: Keys, lua: LuaScripts) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua

    async def mark(self, queue: str, level: int, tenant: str) -> None:
        """The lane of `tenant` (an id) may hold work now: make it pickable, wake a worker."""
        keys = self._keys
        await self._lua.mark(
            ready_tenants=keys.ready_tenants(level),
            ready_queues=keys.ready_queues(level, tenant),
            marks=keys.lane_marks(level),
            passes=keys.passes(level),
            wake=keys.wake(level),
            tenant=tenant,
            queue=queue,
        )

    async def mark_queue(self, queue: str, tenants: Iterable[str]) -> None:
        """Mark every lane of a queue (its tenants by name): after a resume, or a repair."""
        for tenant in tenants:
            for level in (0, 1):
                await self.mark(queue, level, tenant_id(tenant))

    async def pick(self, level: int, count: int, serves: frozenset[str] | None) -> Pick | None:
        """The lane to read up to `count` entries from next at `level` (of the queues in
        `serves`, None: every queue); None when no lane is ready."""
        keys = self._keys
        picked = await self._lua.pick(
            ready_tenants=keys.ready_tenants(level),
            marks=keys.lane_marks(level),
            passes=keys.passes(level),
            weights=keys.weights,
            paused=keys.paused,
            active=keys.active_lanes,
            ready_queues_prefix=keys.ready_queues_prefix(level),
            count=count,
            now_ms=now_ms(),
            level=level,
            most_looks=MOST_LOOKS,
            serves=sorted(serves) if serves is not None else [],
        )
        if picked is None:
            return None
        queue, tenant, mark = picked
        return Pick(Lane(queue, level, tenant), mark, count)

    async def settle(self, pick: Pick, taken: int) -> None:
        """After a read that took fewer entries than the pick asked for."""
        keys, lane = self._keys, pick.lane
        await self._lua.settle(
            ready_tenants=keys.ready_tenants(lane.level),
            ready_queues=keys.ready_queues(lane.level, lane.tenant),
            marks=keys.lane_marks(lane.level),
            passes=keys.passes(lane.level),
            weights=keys.weights,
            tenant=lane.tenant,
            queue=lane.queue,
            mark=pick.mark,
            unused=pick.asked - taken,
        )

    async def set_weights(self, kind: str, weights: dict[str, float]) -> None:
        """Replace the weights of one kind: "t" tenants (by name), "q" queues."""
        fields = {
            f"{kind}:{tenant_id(name) if kind == 't' else name}": weight
            for name, weight in weights.items()
        }
        stored = await cast(Awaitable[list[bytes]], self._redis.hkeys(self._keys.weights))
        stale = [f for f in (key.decode() for key in stored) if f.startswith(f"{kind}:")]
        async with self._redis.pipeline(transaction=True) as pipe:
            gone = [field for field in stale if field not in fields]
            if gone:
                pipe.hdel(self._keys.weights, *gone)
            if fields:
                pipe.hset(self._keys.weights, mapping=fields)
            await pipe.execute()

    async def active_lanes(self) -> AsyncIterator[list[Lane]]:
        """The lanes workers have read from (where silent workers' entries may be), a page
        at a time: each read stays short however many lanes there are."""
        start = 0
        while True:
            members = await self._redis.zrange(
                self._keys.active_lanes, start, start + ACTIVE_PAGE - 1
            )
            if not members:
                return
            lanes = []
            for member in members:
                level, tenant, queue = member.decode().split("|", 2)
                lanes.append(Lane(queue, int(level), tenant))
            yield lanes
            start += ACTIVE_PAGE

    async def prune_active(self, idle_ms: int) -> None:
        """Forget lanes nobody read from for `idle_ms`: entries of a silent worker there were
        taken over long before."""
        await self._redis.zremrangebyscore(self._keys.active_lanes, "-inf", now_ms() - idle_ms)
