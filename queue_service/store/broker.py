"""The Redis data layer: queue registry, atomic put, task records, outcomes, cancel."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from queue_service.errors import QueueFull
from queue_service.models import TERMINAL_STATUSES, PutRequest, ResponseMode, Status
from queue_service.store import statistics
from queue_service.store.events import encode_done
from queue_service.store.ids import TaskId
from queue_service.store.keys import CONSUMER_GROUP, Keys
from queue_service.store.lua import Fields, Scripts
from queue_service.store.records import Outcome, TaskRecord

log = logging.getLogger("queue_service.store.broker")

CANCELLED_STATUS_CODE = 499  # nginx's "client closed request"
QUEUE_FULL_RETRY_AFTER = 5
CALLBACK_SETTLE_MS = 120_000
"""How long after it falls due a callback may stay unsettled before the sweeper resends it."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CancelResult:
    previous: Status
    record: TaskRecord


class Broker:
    """All reads and writes of queues and tasks; shared by the API and the workers."""

    def __init__(self, redis: Redis, keys: Keys, retention_s: int, max_waiting: int = 0) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_s * 1000
        self.max_waiting = max_waiting
        self.scripts = Scripts(redis)
        self._queue_ids: dict[str, int] = {}
        self._queue_names: dict[int, str] = {}

    # -- queue registry ---------------------------------------------------------------
    async def queue_id(self, name: str) -> int:
        """The queue's id, assigning one (and creating its streams) on first use."""
        queue_id = self._queue_ids.get(name)
        if queue_id is None:
            keys = self.keys
            await self.ensure_groups(name)
            queue_id = await self.scripts.register_queue(
                keys.queue_ids, keys.queue_names, keys.queue_seq, name, keys.new_queue_channel
            )
            self._remember(name, queue_id)
        return queue_id

    async def queue_name(self, queue_id: int) -> str | None:
        name = self._queue_names.get(queue_id)
        if name is None:
            raw = await cast(
                Awaitable[bytes | None], self.redis.hget(self.keys.queue_names, str(queue_id))
            )
            if raw is None:
                return None
            name = raw.decode()
            self._remember(name, queue_id)
        return name

    async def queues(self) -> dict[str, int]:
        """Every registered queue: name -> id."""
        raw = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.keys.queue_ids))
        return {name.decode(): int(queue_id) for name, queue_id in raw.items()}

    async def paused_queues(self) -> set[str]:
        members = await cast(Awaitable[set[bytes]], self.redis.smembers(self.keys.paused))
        return {member.decode() for member in members}

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause (workers take none of its jobs; puts still accepted) or resume a queue."""
        if paused:
            await cast(Awaitable[int], self.redis.sadd(self.keys.paused, name))
        else:
            await cast(Awaitable[int], self.redis.srem(self.keys.paused, name))
        await self.redis.publish(self.keys.new_queue_channel, name)  # workers look again

    async def ensure_groups(self, name: str) -> None:
        """Create both level streams of a queue and their consumer group, if missing."""
        for level in (0, 1):
            try:
                await self.redis.xgroup_create(
                    self.keys.stream(name, level), CONSUMER_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _remember(self, name: str, queue_id: int) -> None:
        self._queue_ids[name] = queue_id
        self._queue_names[queue_id] = name

    # -- API side -----------------------------------------------------------------------
    async def put(
        self,
        task_id: TaskId,
        request: PutRequest,
        tenant: str,
        timeout_s: int,
        sealed_upstream_key: bytes | None = None,
    ) -> None:
        """Store the task record and enqueue it, in one atomic step (QueueFull: nothing stored)."""
        created = now_ms()
        deadline = created + timeout_s * 1000
        text_id = str(task_id)
        record: Fields = {
            "task_id": text_id,
            "queue": request.queue,
            "level": request.level,
            "mode": request.response_mode.value,
            "endpoint": request.endpoint,
            "data": orjson.dumps(request.data),
            "callback_url": request.callback_url or "",
            "tenant": tenant,
            "status": Status.QUEUED.value,
            "created_at": created,
            "deadline": deadline,
            "attempts": 0,
        }
        if sealed_upstream_key is not None:
            record["upstream_key"] = sealed_upstream_key
        queue, level, mode = request.queue, request.level, request.response_mode.value
        entry = await self.scripts.put(
            [
                self.keys.task(queue, text_id),
                self.keys.stream(queue, level),
                self.keys.queue_stats(queue),
                self.keys.queue_tenants(queue),
            ],
            text_id,
            deadline - created + self.retention_ms,
            self.max_waiting,
            CONSUMER_GROUP,
            statistics.field("put", level=level, mode=mode),
            tenant,
            record,
        )
        if entry is not None:
            log.info("task %s queued (queue %s, level %d, mode %s)", text_id, queue, level, mode)
        else:
            raise QueueFull(
                f"queue {request.queue} level {request.level} already holds "
                f"{self.max_waiting} waiting jobs; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
            )

    async def get(self, text_id: str, tenant: str) -> TaskRecord | None:
        """The task, or None when it does not exist or belongs to another tenant."""
        task_id = TaskId.parse(text_id)
        if task_id is None:
            return None
        queue = await self.queue_name(task_id.queue_id)
        if queue is None:
            return None
        record = await self.load(queue, text_id)
        return record if record is not None and record.tenant == tenant else None

    async def cancel(
        self, text_id: str, tenant: str, reason: str = "cancelled by request"
    ) -> CancelResult | None:
        """Cancel a task; None when it does not exist for this tenant."""
        record = await self.get(text_id, tenant)
        if record is None:
            return None
        if record.status in TERMINAL_STATUSES:
            return CancelResult(record.status, record)
        result = orjson.dumps({"error": {"message": reason, "type": "cancelled"}})
        previous = await self.scripts.cancel(
            self.keys.task(record.queue, text_id),
            self.keys.stream(record.queue, record.level),
            now_ms(),
            self.retention_ms,
            self.keys.task_channel(record.queue, text_id),
            encode_done(Status.CANCELLED, CANCELLED_STATUS_CODE, "application/json", result),
            self.keys.cancel_channel,
            text_id,
            result,
            CANCELLED_STATUS_CODE,
        )
        if previous is None:
            return None
        log.info(
            "task %s cancelled (queue %s, level %d): %s",
            text_id,
            record.queue,
            record.level,
            reason,
        )
        updated = await self.get(text_id, tenant)
        return CancelResult(Status(previous), updated or record)

    # -- worker side --------------------------------------------------------------------
    async def sealed_upstream_key(self, queue: str, text_id: str) -> bytes | None:
        """The caller's encrypted upstream key (passthrough auth), while the job runs."""
        key: bytes | None = await cast(
            Awaitable[bytes | None], self.redis.hget(self.keys.task(queue, text_id), "upstream_key")
        )
        return key

    async def load(self, queue: str, text_id: str) -> TaskRecord | None:
        """The task record as workers see it (no tenant check)."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.keys.task(queue, text_id))
        )
        return TaskRecord.from_hash(raw) if raw else None

    async def ack(self, queue: str, level: int, entry: str) -> None:
        """Acknowledge and delete a stream entry whose task needs no (more) work."""
        stream = self.keys.stream(queue, level)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, CONSUMER_GROUP, entry)
            pipe.xdel(stream, entry)
            await pipe.execute()

    async def start(self, queue: str, text_id: str, worker: str) -> TaskRecord | None:
        """Claim a task read from a stream; see `lua/start.lua`."""
        raw = await self.scripts.start(self.keys.task(queue, text_id), now_ms(), worker)
        return TaskRecord.from_hash(raw) if raw else None

    async def requeue(self, queue: str, level: int, text_id: str, entry: str) -> bool:
        """Give an unfinished job back to the queue at once (see `lua/requeue.lua`)."""
        return await self.scripts.requeue(
            self.keys.task(queue, text_id),
            self.keys.stream(queue, level),
            entry,
            CONSUMER_GROUP,
            text_id,
        )

    async def publish(self, queue: str, text_id: str, event: bytes) -> None:
        """Send an event (`events.encode_*`) to whoever waits on the task."""
        await self.redis.publish(self.keys.task_channel(queue, text_id), event)

    async def finish(self, record: TaskRecord, entry: str, outcome: Outcome) -> bool:
        """Store the outcome (first one wins) and ack the entry; True if this one won.

        A blocking or streaming waiter gets the body in the completion event; a callback job
        becomes due for its callback; the queue's statistics count the job.
        """
        finished = now_ms()
        fields: Fields = {
            "status": outcome.status.value,
            "status_code": outcome.status_code,
            "content_type": outcome.content_type,
            "result": outcome.body,
            "finished_at": finished,
        }
        callback = record.mode is ResponseMode.CALLBACK
        body = b"" if callback else outcome.body
        event = encode_done(outcome.status, outcome.status_code, outcome.content_type, body)
        queue, text_id = record.queue, record.task_id
        return await self.scripts.finish(
            [
                self.keys.task(queue, text_id),
                self.keys.stream(queue, record.level),
                self.keys.callbacks_due(queue),
                self.keys.queue_stats(queue),
            ],
            entry,
            CONSUMER_GROUP,
            self.retention_ms,
            self.keys.task_channel(queue, text_id),
            event,
            finished + CALLBACK_SETTLE_MS if callback else 0,
            text_id,
            fields,
            _finish_statistics(record, outcome, finished),
        )

    async def record_callback(
        self,
        record: TaskRecord,
        state: str,
        attempts: int,
        error: str | None,
        next_attempt_ms: int | None = None,
    ) -> None:
        """Note a callback delivery attempt on the task record and its callbacks-due entry.

        With `next_attempt_ms` the callback stays due until a little after that time; without,
        it is settled (delivered, or given up on: see `dead_letter`).
        """
        fields: Fields = {
            "callback_status": state,
            "callback_attempts": attempts,
            "callback_last_error": error or "",
        }
        due = self.keys.callbacks_due(record.queue)
        await self.scripts.update(self.keys.task(record.queue, record.task_id), fields)
        stats = self.keys.queue_stats(record.queue)
        await cast(
            Awaitable[float],
            self.redis.hincrbyfloat(stats, statistics.field("callbacks", result=state), 1),
        )
        if next_attempt_ms is None:
            await self.redis.zrem(due, record.task_id)
        else:
            await self.redis.zadd(due, {record.task_id: next_attempt_ms + CALLBACK_SETTLE_MS})

    async def dead_letter(self, record: TaskRecord, keep_s: int) -> None:
        """Keep a callback given up on for inspection and re-delivery, `keep_s` seconds."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.dead_letters, {f"{record.queue}/{record.task_id}": now_ms()})
            pipe.expire(self.keys.task(record.queue, record.task_id), keep_s)
            await pipe.execute()

    async def dead_letter_ids(self) -> list[tuple[str, str]]:
        """(queue, task id) of every dead letter, oldest first."""
        members = await self.redis.zrange(self.keys.dead_letters, 0, -1)
        pairs = []
        for member in members:
            queue, _, text_id = member.decode().partition("/")
            pairs.append((queue, text_id))
        return pairs

    async def forget_dead_letter(self, queue: str, text_id: str) -> None:
        await self.redis.zrem(self.keys.dead_letters, f"{queue}/{text_id}")

    async def overdue_callbacks(self, queue: str, limit: int = 100) -> list[str]:
        """Task ids whose callback should have been settled by now (a worker died)."""
        ids = await self.redis.zrangebyscore(
            self.keys.callbacks_due(queue), "-inf", now_ms(), start=0, num=limit
        )
        return [task_id.decode() for task_id in ids]


def _finish_statistics(record: TaskRecord, outcome: Outcome, finished: int) -> dict[str, float]:
    labels = {"level": record.level, "mode": record.mode.value}
    counts: dict[str, float] = {
        statistics.field("finished", status=outcome.status.value, **labels): 1,
        statistics.field("upstream_status", code=outcome.status_code): 1,
    }
    counts |= statistics.observe(
        "end_to_end_seconds", (finished - record.created_at) / 1000, **labels
    )
    if record.started_at is not None:
        started = record.started_at
        counts |= statistics.observe(
            "pickup_seconds", (started - record.created_at) / 1000, **labels
        )
        counts |= statistics.observe("run_seconds", (finished - started) / 1000, **labels)
    return counts
