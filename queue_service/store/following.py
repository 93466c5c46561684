"""Tasks followed upstream: jobs whose upstream answers the submit with a task id of its own
and finishes later (Midjourney, Suno).

Each queue has a followed set (`Keys.followed`): task id -> when to look at its upstream task
next. The worker that submits a job hands it over here in the step that acknowledges its
stream entry (`lua/follow.lua`); followers in every worker then claim due tasks with a lease
(`lua/claim_followed.lua`), poll their upstream tasks in batches and record what changed, until
`Tasks.finish` (or a cancel or timeout, `Tasks.cancel`) takes the task off the set.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from redis.asyncio import Redis

from .keys import CONSUMER_GROUP, Keys, tenant_id
from .lua import Fields, LuaScripts
from .records import TaskRecord


class Following:
    def __init__(self, redis: Redis, keys: Keys, lua: LuaScripts) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua

    async def hand_over(
        self, record: TaskRecord, entry: str, fields: Fields, next_look_ms: int, event: bytes
    ) -> bool:
        """Follow a task its upstream accepted (`fields` name the upstream task): its stream
        entry is acknowledged in the same step, `event` published. False: it ended meanwhile."""
        queue = record.queue
        # Before the task joins the set, so a follower is sure to look at its queue.
        await cast(Awaitable[int], self._redis.sadd(self._keys.followed_queues, queue))
        return await self._follow(record, entry, fields, next_look_ms, event)

    async def update(
        self, record: TaskRecord, fields: Fields, next_look_ms: int, event: bytes = b""
    ) -> bool:
        """Record what the upstream said of a followed task and when to look next (`event`
        published when given); False when the task has ended meanwhile."""
        return await self._follow(record, "", fields, next_look_ms, event)

    async def _follow(
        self, record: TaskRecord, entry: str, fields: Fields, next_look_ms: int, event: bytes
    ) -> bool:
        queue, task_id = record.queue, record.task_id
        return await self._lua.follow(
            task=self._keys.task(queue, task_id),
            stream=self._keys.stream(queue, record.level, tenant_id(record.tenant)),
            followed=self._keys.followed(queue),
            task_id=task_id,
            next_look_ms=next_look_ms,
            entry=entry,
            group=CONSUMER_GROUP,
            channel=self._keys.task_channel(queue, task_id),
            event=event,
            fields=fields,
        )

    async def queues(self) -> list[str]:
        """The queues that have had tasks followed."""
        members = await cast(
            Awaitable[set[bytes]], self._redis.smembers(self._keys.followed_queues)
        )
        return sorted(name.decode() for name in members)

    async def claim(self, queue: str, due_by: int, lease_ms: int, most: int) -> list[TaskRecord]:
        """Records of up to `most` of the queue's tasks due for a look by `due_by` (ms),
        leased to the caller for `lease_ms` after that (ids whose record is gone leave the
        set)."""
        followed = self._keys.followed(queue)
        task_ids = await self._lua.claim_followed(
            followed=followed, due_by=due_by, lease_ms=lease_ms, most=most
        )
        if not task_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self._keys.task(queue, task_id))
            raws: list[dict[bytes, bytes]] = await pipe.execute()
        gone = [task_id for task_id, raw in zip(task_ids, raws, strict=True) if not raw]
        if gone:
            await cast(Awaitable[int], self._redis.zrem(followed, *gone))
        return [TaskRecord.from_hash(raw) for raw in raws if raw]
