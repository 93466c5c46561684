"""Tasks followed upstream: jobs whose upstream answers the submit with a task id of its own
and finishes later (Midjourney, Suno).

Each queue has a followed set (`Keys.followed`): task id -> when to look at its upstream task
next. The worker that submits a job hands it over here in the step that acknowledges its
stream entry (`lua/follow.lua`); followers in every worker then claim due tasks with a lease
(`lua/claim_followed.lua`), poll their upstream tasks in batches and record what changed,
until the task leaves the set: its job finished (`Tasks.finish`, by a follower when the
upstream task ended, failed or the job's deadline passed), cancelled (`Tasks.cancel`) or
timed out by its waiting client (`Tasks.time_out`), or `drop`ped.

Besides the upstream task's id, object and progress (`TaskRecord`), a followed task's record
keeps what its follower needs across reads (`FollowedTask`): how many reads in a row did not
find it upstream, and why the last read failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from .keys import CONSUMER_GROUP, Keys, tenant_id
from .lua import Fields, LuaScripts
from .records import TaskRecord

log = logging.getLogger("queue_service.store.following")

MISSES_FIELD = "upstream_misses"
"""Reads in a row whose answer did not hold the task (the upstream may have forgotten it)."""
READ_ERROR_FIELD = "upstream_read_error"
"""Why the last read of the task failed ("" after a read that worked)."""


@dataclass(frozen=True, slots=True)
class FollowedTask:
    """A claimed task: its record and its follower's own notes."""

    record: TaskRecord
    misses: int = 0
    read_error: str = ""

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> FollowedTask:
        misses = raw.get(MISSES_FIELD.encode())
        read_error = raw.get(READ_ERROR_FIELD.encode(), b"").decode(errors="replace")
        return cls(TaskRecord.from_hash(raw), int(misses) if misses else 0, read_error)


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
        published when given); False when the task has ended meanwhile (it leaves the set)."""
        return await self._follow(record, "", fields, next_look_ms, event)

    async def drop(self, record: TaskRecord) -> None:
        """Follow the task no more (it ended, or cannot be followed)."""
        followed = self._keys.followed(record.queue)
        await cast(Awaitable[int], self._redis.zrem(followed, record.task_id))

    async def release(self, queue: str, task_ids: Iterable[str], now_ms: int) -> None:
        """Give up claims (a follower stopping): those of the tasks still followed come due
        now, for any other follower."""
        due = dict.fromkeys(task_ids, now_ms)
        if due:
            await self._redis.zadd(self._keys.followed(queue), due, xx=True)

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

    async def claim(self, queue: str, due_by: int, lease_ms: int, most: int) -> list[FollowedTask]:
        """Up to `most` of the queue's tasks due for a look by `due_by` (ms), leased to the
        caller for `lease_ms` after that (ids whose record is gone leave the set)."""
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
        claimed, gone = [], []
        for task_id, raw in zip(task_ids, raws, strict=True):
            try:
                claimed.append(FollowedTask.from_hash(raw))
            except (KeyError, ValueError):  # gone (empty), or not a record we can read
                if raw:
                    log.error("task %s: its record cannot be read; it is followed no more", task_id)
                gone.append(task_id)
        if gone:
            await cast(Awaitable[int], self._redis.zrem(followed, *gone))
        return claimed
