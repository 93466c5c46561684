"""Looking into a drill's Redis keys (read only), and deleting them all afterwards."""

from __future__ import annotations

import contextlib
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queue_service.store.keys import CONSUMER_GROUP, Keys

TERMINAL = {"succeeded", "failed", "timeout", "cancelled"}
ARQ_JOB_KEYS = ("job", "retry", "in-progress", "result")


def _of(pid: int | None, consumer: str) -> bool:
    """Whether a consumer (worker) name belongs to process `pid` (None: any)."""
    return pid is None or f"-{pid}-" in consumer


class Probe:
    """Read-only views of one drill's queue (or queues), and the clean-up of its keys."""

    def __init__(self, redis_url: str, prefix: str, queue: str, *more_queues: str) -> None:
        self.redis = Redis.from_url(
            redis_url,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 5),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.queues = (queue, *more_queues)

    async def close(self) -> None:
        await self.redis.aclose()

    async def in_flight(self, pid: int | None = None) -> int:
        """Jobs a worker (`pid`, or any) holds: read and not acknowledged, or finished with
        their callback not yet settled. What a kill of that worker can leave half done."""
        total = 0
        for queue in self.queues:
            total += await self._in_flight(queue, pid)
        return total

    async def _in_flight(self, queue: str, pid: int | None) -> int:
        total = 0
        for level in (0, 1):
            with contextlib.suppress(ResponseError):  # no group yet: nothing put so far
                summary = await self.redis.xpending(self.keys.stream(queue, level), CONSUMER_GROUP)
                for consumer in summary.get("consumers") or []:
                    if _of(pid, consumer["name"].decode()):
                        total += int(consumer["pending"])
        due = await self.redis.zrange(self.keys.callbacks_due(queue), 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in due:
                pipe.hmget(self.keys.task(queue, task_id.decode()), "worker", "callback_status")
            rows = cast(list[list[bytes | None]], await pipe.execute())
        for worker, callback_status in rows:
            if worker and callback_status != b"delivered" and _of(pid, worker.decode()):
                total += 1
        return total

    async def followed(self) -> int:
        """Jobs whose upstream task (Midjourney, Suno) is being followed, on every worker."""
        return sum([int(await self.redis.zcard(self.keys.followed(q))) for q in self.queues])

    async def awaiting_sweeper(self, task_ids: list[str]) -> dict[str, float]:
        """Of these tasks, those finished whose callback is due for the sweeper: id -> when
        it falls due (epoch seconds)."""
        waiting = {}
        for queue in self.queues:  # a task is on one of them
            due_key = self.keys.callbacks_due(queue)
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id in task_ids:
                    pipe.hget(self.keys.task(queue, task_id), "status")
                    pipe.zscore(due_key, task_id)
                replies = cast(list[Any], await pipe.execute())
            for task_id, status, score in zip(task_ids, replies[::2], replies[1::2], strict=True):
                if status is not None and status.decode() in TERMINAL and score is not None:
                    waiting[task_id] = float(score) / 1000
        return waiting

    async def delete_keys(self) -> int:
        """Delete every key of this prefix, and arq's global keys of its jobs."""
        doomed: set[bytes | str] = set()
        for job_id in await self.redis.zrange(self.keys.arq_queue, 0, -1):
            doomed.update(f"arq:{kind}:{job_id.decode()}" for kind in ARQ_JOB_KEYS)
        for pattern in (f"{self.prefix}:*", f"arq:*:{self.prefix}:*"):
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                doomed.add(key)
        deleted = 0
        batch = list(doomed)
        for start in range(0, len(batch), 500):
            deleted += int(await self.redis.delete(*batch[start : start + 500]))
        return deleted
