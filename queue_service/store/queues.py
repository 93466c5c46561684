"""The queue registry: each queue name's small integer id (it appears in task ids), its
lanes (a stream per tenant and level) and consumer group, which tenants use it, and whether
it is paused. There are at most `max_queues` of them; a queue idle long enough is removed
(`remove_if_idle`)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from queue_service.errors import TooManyQueues
from queue_service.timing import now_ms

from .keys import CONSUMER_GROUP, Keys, tenant_id
from .lua import LuaScripts
from .scheduler import Lane, Scheduler

SWEEP_PAGE = 500
"""Queues looked at per round trip by the sweeps over every queue."""


class QueueRegistry:
    def __init__(
        self, redis: Redis, keys: Keys, lua: LuaScripts, scheduler: Scheduler, max_queues: int = 0
    ) -> None:
        self._redis = redis
        self.max_queues = max_queues
        self._keys = keys
        self._lua = lua
        self._scheduler = scheduler
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}

    async def id(self, name: str) -> int:
        """The queue's id, assigning one (and creating its streams) on first use."""
        queue_id = self._ids.get(name)
        if queue_id is None:
            queue_id = await self.register(name)
        return queue_id

    async def register(self, name: str, preferred_id: int = 0) -> int:
        """(Re-)register a queue: its id (`preferred_id` when free), streams and group.

        Also heals a queue whose registration was lost with Redis's data."""
        keys = self._keys
        try:
            queue_id = await self._lua.register_queue(
                ids=keys.queue_ids,
                names=keys.queue_names,
                sequence=keys.queue_seq,
                meta=keys.queue_meta(name),
                streams=(keys.stream(name, 0), keys.stream(name, 1)),
                name=name,
                announce_channel=keys.new_queue_channel,
                group=CONSUMER_GROUP,
                preferred_id=preferred_id,
                max_queues=self.max_queues,
            )
        except ResponseError as exc:
            if str(exc).startswith("TOO_MANY_QUEUES"):
                raise TooManyQueues(
                    f"the service already holds its most queues ({self.max_queues}); put on "
                    "an existing queue, or retry once idle queues have been removed"
                ) from None
            raise
        self._forget(name)
        self._remember(name, queue_id)
        return queue_id

    async def name(self, queue_id: int, *, fresh: bool = False) -> str | None:
        """The name of the queue with this id (`fresh`: from Redis, not this process's cache)."""
        name = None if fresh else self._names.get(queue_id)
        if name is None:
            raw = await cast(
                Awaitable[bytes | None], self._redis.hget(self._keys.queue_names, str(queue_id))
            )
            if raw is None:
                return None
            name = raw.decode()
            self._remember(name, queue_id)
        return name

    async def all(self) -> dict[str, int]:
        """Every registered queue: name -> id."""
        raw = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.queue_ids))
        return {name.decode(): int(queue_id) for name, queue_id in raw.items()}

    async def exists(self, name: str) -> bool:
        return bool(await cast(Awaitable[int], self._redis.hexists(self._keys.queue_ids, name)))

    async def tenants(self, name: str) -> set[str]:
        """The tenants that have put jobs on the queue (by name)."""
        tenants = self._keys.queue_tenants(name)
        members = await cast(Awaitable[set[bytes]], self._redis.smembers(tenants))
        return {member.decode() for member in members}

    async def lanes(self, name: str) -> list[Lane]:
        """Every lane of the queue: each tenant's at each level (the no-auth tenant's always)."""
        return lanes_of(name, await self.tenants(name))

    def lane_key(self, lane: Lane) -> str:
        return self._keys.stream(lane.queue, lane.level, lane.tenant)

    async def used_by(self, name: str, tenant: str) -> bool:
        """Whether `tenant` has put jobs on the queue (and so may read its figures)."""
        tenants = self._keys.queue_tenants(name)
        return bool(await cast(Awaitable[int], self._redis.sismember(tenants, tenant)))

    async def paused(self) -> set[str]:
        members = await cast(Awaitable[set[bytes]], self._redis.smembers(self._keys.paused))
        return {member.decode() for member in members}

    async def is_paused(self, name: str) -> bool:
        return bool(await cast(Awaitable[int], self._redis.sismember(self._keys.paused, name)))

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause (workers take none of its jobs; puts still accepted) or resume a queue."""
        if paused:
            await cast(Awaitable[int], self._redis.sadd(self._keys.paused, name))
        else:
            await cast(Awaitable[int], self._redis.srem(self._keys.paused, name))
            await self._scheduler.mark_queue(name, {""} | await self.tenants(name))
        await self._redis.publish(self._keys.new_queue_channel, name)  # workers look again

    async def idle_candidates(self, names: list[str], idle_s: float) -> list[str]:
        """Of these queues, those whose last task record expired `idle_s` ago or more (only
        they may be idle: `remove_if_idle` decides), one round trip per `SWEEP_PAGE`."""
        cutoff = now_ms() - idle_s * 1000
        found = []
        for start in range(0, len(names), SWEEP_PAGE):
            page = names[start : start + SWEEP_PAGE]
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in page:
                    pipe.hget(self._keys.queue_meta(name), "expires_at")
                expiries = await pipe.execute()
            found += [
                name
                for name, expires in zip(page, expiries, strict=True)
                if int(expires or 0) <= cutoff
            ]
        return found

    async def repair_ready(self, names: list[str]) -> int:
        """Mark ready every lane of these queues with entries not yet handed out (see
        `Scheduler.repair`), `SWEEP_PAGE` queues per round trip; how many were marked."""
        marked = 0
        for start in range(0, len(names), SWEEP_PAGE):
            page = names[start : start + SWEEP_PAGE]
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in page:
                    pipe.smembers(self._keys.queue_tenants(name))
                tenants = await pipe.execute()
            lanes = [
                lane
                for name, members in zip(page, tenants, strict=True)
                for lane in lanes_of(name, {member.decode() for member in members})
            ]
            marked += await self._scheduler.repair(lanes, [self.lane_key(lane) for lane in lanes])
        return marked

    async def remove_if_idle(self, name: str, idle_s: float) -> bool:
        """Remove the queue (its streams, figures and registration) when nothing waits, runs
        or is owed on it and its last task record expired `idle_s` seconds ago or more."""
        keys = self._keys
        tenants = await self.tenants(name)
        lanes = lanes_of(name, tenants)
        removed = await self._lua.remove_queue(
            ids=keys.queue_ids,
            names=keys.queue_names,
            meta=keys.queue_meta(name),
            lanes=[self.lane_key(lane) for lane in lanes],
            tenant_count=len(tenants),
            stats=keys.queue_stats(name),
            tenants=keys.queue_tenants(name),
            callbacks_due=keys.callbacks_due(name),
            paused=keys.paused,
            followed=keys.followed(name),
            followed_queues=keys.followed_queues,
            name=name,
            now_ms=now_ms(),
            idle_ms=int(idle_s * 1000),
            announce_channel=keys.new_queue_channel,
        )
        if removed:
            self._forget(name)
            await self._scheduler.forget(lanes)
        return removed

    async def ensure_groups(self, name: str) -> bool:
        """Create a registered queue's level streams and group if missing (Redis lost them);
        False, creating nothing, when the queue is not registered (any more)."""
        lanes = [self.lane_key(lane) for lane in await self.lanes(name)]
        return await self._lua.ensure_groups(
            meta=self._keys.queue_meta(name), lanes=lanes, group=CONSUMER_GROUP
        )

    def _remember(self, name: str, queue_id: int) -> None:
        self._forget(name)
        self._ids[name] = queue_id
        self._names[queue_id] = name

    def _forget(self, name: str) -> None:
        queue_id = self._ids.pop(name, None)
        if queue_id is not None and self._names.get(queue_id) == name:
            del self._names[queue_id]


def lanes_of(queue: str, tenants: set[str]) -> list[Lane]:
    """The lanes of a queue used by these tenants (by name), and the no-auth tenant's."""
    ids = sorted({""} | {tenant_id(tenant) for tenant in tenants})
    return [Lane(queue, level, tenant) for tenant in ids for level in (0, 1)]
