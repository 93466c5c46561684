"""The callback ledger: which callbacks are still owed, and which were given up on.

One class per Redis sorted set, as rq's registries: `CallbacksDue` (per queue) holds every
finished callback job until its callback is settled, so a sweeper can resend those whose
worker died; `DeadLetters` (global) holds the callbacks given up on, for inspection and
re-delivery. `CallbackLedger` records each delivery attempt on the task and in both.
"""

from __future__ import annotations

from redis.asyncio import Redis

from queue_service.models import CallbackState
from queue_service.timing import now_ms

from .keys import Keys
from .lua import LuaScripts
from .queues import SWEEP_PAGE
from .records import TaskRecord, callback_fields
from .statistics import field

CALLBACK_SETTLE_MS = 120_000
"""How long after it falls due a callback may stay unsettled before the sweeper resends it."""


class CallbacksDue:
    """Per queue: task id -> when its callback must have been settled (ms)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def expect_by(self, queue: str, task_id: str, at_ms: int) -> None:
        await self._redis.zadd(self._keys.callbacks_due(queue), {task_id: at_ms})

    async def settle(self, queue: str, task_id: str) -> None:
        await self._redis.zrem(self._keys.callbacks_due(queue), task_id)

    async def overdue(self, queues: list[str], limit: int = 100) -> dict[str, list[str]]:
        """Per queue with any, the task ids whose callback should have been settled by now
        (a worker died): one round trip per `SWEEP_PAGE` queues."""
        found: dict[str, list[str]] = {}
        now = now_ms()
        for start in range(0, len(queues), SWEEP_PAGE):
            page = queues[start : start + SWEEP_PAGE]
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue in page:
                    pipe.zrangebyscore(
                        self._keys.callbacks_due(queue), "-inf", now, start=0, num=limit
                    )
                replies = await pipe.execute()
            for queue, ids in zip(page, replies, strict=True):
                if ids:
                    found[queue] = [task_id.decode() for task_id in ids]
        return found


class DeadLetters:
    """Global: `queue/task id` of each callback given up on -> when (ms)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def add(self, record: TaskRecord, keep_s: int) -> None:
        """Keep a callback given up on (and its task) for `keep_s` seconds."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._keys.dead_letters, {f"{record.queue}/{record.task_id}": now_ms()})
            pipe.expire(self._keys.task(record.queue, record.task_id), keep_s)
            await pipe.execute()

    async def all(self) -> list[tuple[str, str]]:
        """(queue, task id) of every dead letter, oldest first."""
        members = await self._redis.zrange(self._keys.dead_letters, 0, -1)
        pairs = []
        for member in members:
            queue, _, text_id = member.decode().partition("/")
            pairs.append((queue, text_id))
        return pairs

    async def forget(self, queue: str, task_id: str) -> None:
        await self._redis.zrem(self._keys.dead_letters, f"{queue}/{task_id}")


class CallbackLedger:
    def __init__(self, redis: Redis, keys: Keys, lua: LuaScripts) -> None:
        self._keys = keys
        self._lua = lua
        self.due = CallbacksDue(redis, keys)
        self.dead_letters = DeadLetters(redis, keys)

    async def record_attempt(
        self,
        record: TaskRecord,
        state: CallbackState,
        attempts: int,
        error: str | None,
        next_attempt_ms: int | None = None,
    ) -> None:
        """Note a delivery attempt on the task record and its callbacks-due entry.

        With `next_attempt_ms` the callback stays due until a little after that time; without,
        it is settled (delivered, or given up on: see `DeadLetters.add`).
        """
        keys, queue = self._keys, record.queue
        await self._lua.callback_attempt(
            task=keys.task(queue, record.task_id),
            stats=keys.queue_stats(queue),
            callbacks_due=keys.callbacks_due(queue),
            task_id=record.task_id,
            statistic=field("callbacks", result=state.value),
            due_ms=None if next_attempt_ms is None else next_attempt_ms + CALLBACK_SETTLE_MS,
            fields=callback_fields(state, attempts, error),
        )
