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
"""Most lanes one pick looks at: a worker serving every queue takes the first it meets."""
MOST_LOOKS_FILTERED = 4096
"""...and one serving some queues (`--queues`) may have to pass over many of others."""


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
            filtered=keys.filtered_queues,
            queue_wake=keys.wake(level, queue),
            tenant=tenant,
            queue=queue,
        )

    async def forget(self, lanes: list[Lane]) -> None:
        """Drop what the scheduler keeps of these lanes (their queue was removed)."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for lane in lanes:
                member = f"{lane.tenant}|{lane.queue}"
                pipe.hdel(keys.lane_marks(lane.level), member)
                pipe.hdel(keys.passes(lane.level), f"q:{member}")
                pipe.zrem(keys.ready_queues(lane.level, lane.tenant), lane.queue)
                pipe.zrem(keys.active_lanes, _active_member(lane))
                pipe.zrem(keys.parked_lanes, _active_member(lane))
            await pipe.execute()

    async def park(self, lane: Lane, until_ms: int) -> None:
        """Pass the lane over until `until_ms`: its next job waits for budget, and other
        lanes' jobs should have the slots meanwhile."""
        await self._redis.zadd(self._keys.parked_lanes, {_active_member(lane): until_ms})

    async def serve_only(self, queues: frozenset[str]) -> None:
        """A worker serving only these queues: their puts wake it on lists of their own."""
        await cast(Awaitable[int], self._redis.sadd(self._keys.filtered_queues, *sorted(queues)))

    async def mark_queue(self, queue: str, tenants: Iterable[str]) -> None:
        """Mark every lane of a queue (its tenants by name), after a resume."""
        for tenant in tenants:
            for level in (0, 1):
                await self.mark(queue, level, tenant_id(tenant))

    async def repair(self, lanes: list[Lane], streams: list[str]) -> int:
        """Mark the lanes (with their stream keys) that hold entries no worker was handed:
        a put whose process died between storing and marking, or scheduler keys lost
        apart from the streams, leaves such a lane unmarked. Returns how many it marked."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xinfo_groups(stream)
            replies = await pipe.execute(raise_on_error=False)
        marked = 0
        for lane, groups in zip(lanes, replies, strict=True):
            if not isinstance(groups, list):
                continue  # no stream: nothing waits there
            for group in groups:
                lag = group.get("lag")
                if lag is None or int(lag) > 0:  # None: Redis cannot tell (entries deleted)
                    await self.mark(lane.queue, lane.level, lane.tenant)
                    marked += 1
                    break
        return marked

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
            parked=keys.parked_lanes,
            ready_queues_prefix=keys.ready_queues_prefix(level),
            count=count,
            now_ms=now_ms(),
            level=level,
            most_looks=MOST_LOOKS if serves is None else MOST_LOOKS_FILTERED,
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

    async def active_lanes(self, idle_ms: int) -> AsyncIterator[list[tuple[Lane, bool]]]:
        """The lanes workers have read from or hold entries of (where silent workers'
        entries may be), a page at a time so each read stays short, each with whether it
        was last noted more than `idle_ms` ago."""
        start, idle_before = 0, now_ms() - idle_ms
        while True:
            members = await self._redis.zrange(
                self._keys.active_lanes, start, start + ACTIVE_PAGE - 1, withscores=True
            )
            if not members:
                return
            page = []
            for member, noted in members:
                level, tenant, queue = member.decode().split("|", 2)
                page.append((Lane(queue, int(level), tenant), noted < idle_before))
            yield page
            start += ACTIVE_PAGE

    async def note_active(self, lanes: Iterable[Lane]) -> None:
        """Lanes this worker holds entries of stay in the active set (see `active_lanes`)."""
        members = {_active_member(lane): now_ms() for lane in lanes}
        if members:
            await self._redis.zadd(self._keys.active_lanes, members)

    async def forget_active(self, lanes: list[Lane]) -> None:
        if lanes:
            await self._redis.zrem(self._keys.active_lanes, *map(_active_member, lanes))


def _active_member(lane: Lane) -> str:
    return f"{lane.level}|{lane.tenant}|{lane.queue}"
