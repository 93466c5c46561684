"""Task lifecycle in Redis: submit, start, finish, cancel, requeue (each one atomic script).

`submit` is the only way a job enters a queue: the put route, blocking and streaming waits
and scheduled jobs all `prepare` a `Submission` and submit it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from queue_service.errors import Conflict, QueueFull, StaleSubmission
from queue_service.models import (
    TERMINAL_STATUSES,
    CallbackState,
    PutRequest,
    ResponseMode,
    Status,
)
from queue_service.timing import now_ms

from .events import encode_done
from .ids import TaskId, TaskIdFactory
from .keys import CONSUMER_GROUP, Keys, tenant_id
from .ledger import CALLBACK_SETTLE_MS
from .lua import LuaScripts
from .queues import QueueRegistry
from .records import UPSTREAM_KEY_FIELD, Outcome, TaskRecord
from .scheduler import Scheduler
from .statistics import field, finish_counts
from .streams import StreamEntry

log = logging.getLogger("queue_service.store.tasks")

STOPPED_STATUS_CODES = {Status.CANCELLED: 499, Status.TIMEOUT: 408}
"""499: nginx's "client closed request"; 408: the waiting client's timeout passed."""
QUEUE_FULL_RETRY_AFTER = 5
INLINE_RESULT_BYTES = 256 * 1024
"""Results up to this size travel in the completion event; larger ones are read from the
task record (see events.py)."""


@dataclass(frozen=True, slots=True)
class Submission:
    """A job about to enter its queue, with its id (and the channel its events will use)."""

    task_id: TaskId
    job: PutRequest
    tenant: str
    timeout_s: int
    channel: str
    """Pub/sub channel of the task's events: subscribe before submitting to miss none."""
    sealed_upstream_key: bytes | None = None
    idempotency_key: str | None = None
    """The client's `Idempotency-Key`: a retried put of the same request creates nothing."""

    @property
    def text_id(self) -> str:
        return str(self.task_id)


@dataclass(frozen=True, slots=True)
class CancelResult:
    previous: Status
    record: TaskRecord


class Tasks:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        lua: LuaScripts,
        queues: QueueRegistry,
        ids: TaskIdFactory,
        scheduler: Scheduler,
        retention_s: int,
        max_waiting: int = 0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua
        self._queues = queues
        self._ids = ids
        self._scheduler = scheduler
        self.retention_ms = retention_s * 1000
        self.max_waiting = max_waiting

    # -- entering a queue ---------------------------------------------------------------
    async def prepare(
        self,
        job: PutRequest,
        tenant: str,
        timeout_s: int,
        sealed_upstream_key: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Give the job its id (registering its queue on first use); nothing is queued yet."""
        queue_id = await self._queues.id(job.queue)
        task_id = self._ids.make(queue_id, job.level, job.response_mode)
        channel = self._keys.task_channel(job.queue, str(task_id))
        return Submission(
            task_id, job, tenant, timeout_s, channel, sealed_upstream_key, idempotency_key
        )

    async def enqueue(
        self,
        job: PutRequest,
        tenant: str,
        timeout_s: int,
        sealed_upstream_key: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """`prepare` and `submit` a job nobody waits on (callback mode); its task id."""
        args = (job, tenant, timeout_s, sealed_upstream_key, idempotency_key)
        try:
            return await self.submit(await self.prepare(*args))
        except StaleSubmission:  # its queue was registered anew: once more, with the new id
            return await self.submit(await self.prepare(*args))

    async def submit(self, submission: Submission) -> str:
        """Store the task record and enqueue it, in one atomic step (QueueFull: nothing
        stored). Returns the id of the task that holds the job: this one, or, when the
        submission's idempotency key put the same request before, that earlier task (and
        nothing new is stored). The same key with another request is a Conflict."""
        job, text_id = submission.job, submission.text_id
        queue, queue_id = job.queue, submission.task_id.queue_id
        put = self._put(submission)
        for attempt in (1, 2):
            try:
                entry = await put()
                break
            except ResponseError as exc:
                refusal = str(exc)
                if refusal.startswith("IDEMPOTENT"):
                    earlier = self._earlier(submission, refusal)
                    # The first put may have died before marking its lane: mark it now.
                    await self._scheduler.mark(queue, job.level, tenant_id(submission.tenant))
                    return earlier
                if refusal.startswith("DUPLICATE"):
                    raise StaleSubmission(f"task id {text_id} is taken; put it again") from exc
                if not refusal.startswith("STALE") or attempt == 2:
                    raise
            log.warning("queue %s lost its registration (Redis lost data?); registering", queue)
            if await self._queues.register(queue, preferred_id=queue_id) != queue_id:
                raise StaleSubmission(f"queue {queue} has a new id; put the job again")
        if entry is None:
            raise QueueFull(
                f"queue {queue} level {job.level} already holds {self.max_waiting} waiting "
                "jobs of this tenant; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
            )
        await self._scheduler.mark(queue, job.level, tenant_id(submission.tenant))
        mode = job.response_mode.value
        log.info("task %s queued (queue %s, level %d, mode %s)", text_id, queue, job.level, mode)
        return text_id

    def _put(self, submission: Submission) -> Callable[[], Awaitable[bytes | None]]:
        """The `put.lua` call that stores this submission."""
        job, text_id, tenant = submission.job, submission.text_id, submission.tenant
        created = now_ms()
        record = TaskRecord(
            task_id=text_id,
            queue=job.queue,
            level=job.level,
            mode=job.response_mode,
            endpoint=job.endpoint,
            data=orjson.dumps(job.data),
            callback_url=job.callback_url or "",
            tenant=tenant,
            status=Status.QUEUED,
            created_at=created,
            deadline=created + submission.timeout_s * 1000,
        )
        fields = record.to_hash()
        if submission.sealed_upstream_key is not None:
            fields[UPSTREAM_KEY_FIELD] = submission.sealed_upstream_key
        queue, level = job.queue, job.level
        ttl_ms = submission.timeout_s * 1000 + self.retention_ms
        idempotency = None
        if submission.idempotency_key is not None:
            digest = _digest(tenant, submission.idempotency_key)
            idempotency = self._keys.idempotency(queue, digest)
        return functools.partial(
            self._lua.put,
            task=self._keys.task(queue, text_id),
            stream=self._keys.stream(queue, level, tenant_id(tenant)),
            stats=self._keys.queue_stats(queue),
            tenants=self._keys.queue_tenants(queue),
            meta=self._keys.queue_meta(queue),
            task_id=text_id,
            ttl_ms=ttl_ms,
            max_waiting=self.max_waiting,
            group=CONSUMER_GROUP,
            statistic=field("put", level=level, mode=job.response_mode.value),
            tenant=tenant,
            queue_id=submission.task_id.queue_id,
            expires_at_ms=created + ttl_ms,
            record=fields,
            idempotency=idempotency,
            fingerprint=_fingerprint(job) if idempotency else "",
        )

    @staticmethod
    def _earlier(submission: Submission, refusal: str) -> str:
        """The task an idempotency key put before: its id if it was this same request."""
        _, fingerprint, earlier = refusal.split(" ", 2)
        if fingerprint != _fingerprint(submission.job):
            raise Conflict(
                f"this Idempotency-Key was used for another request (task {earlier}); "
                "use a new key for a new request"
            )
        log.info("task %s: same request, same idempotency key; nothing new", earlier)
        return earlier

    # -- the submitter's view -----------------------------------------------------------
    async def get(self, text_id: str, tenant: str) -> TaskRecord | None:
        """The task, or None when it does not exist or belongs to another tenant."""
        task_id = TaskId.parse(text_id)
        if task_id is None:
            return None
        queue = await self._queues.name(task_id.queue_id)
        record = None if queue is None else await self.load(queue, text_id)
        if record is None:  # the queue may have a new id since this process cached it
            fresh = await self._queues.name(task_id.queue_id, fresh=True)
            if fresh is not None and fresh != queue:
                record = await self.load(fresh, text_id)
        return record if record is not None and record.tenant == tenant else None

    async def cancel(
        self, text_id: str, tenant: str, reason: str = "cancelled by request"
    ) -> CancelResult | None:
        """Cancel a task (by request, or its waiting client left); None when it does not
        exist for this tenant."""
        return await self._stop(text_id, tenant, Status.CANCELLED, reason)

    async def time_out(self, text_id: str, tenant: str, reason: str) -> CancelResult | None:
        """End a task whose waiting client's timeout passed: `timeout`, as in every mode."""
        return await self._stop(text_id, tenant, Status.TIMEOUT, reason)

    async def _stop(
        self, text_id: str, tenant: str, status: Status, reason: str
    ) -> CancelResult | None:
        record = await self.get(text_id, tenant)
        if record is None:
            return None
        if record.status in TERMINAL_STATUSES:
            return CancelResult(record.status, record)
        code = STOPPED_STATUS_CODES[status]
        result = orjson.dumps({"error": {"message": reason, "type": status.value}})
        labels = {"level": record.level, "mode": record.mode.value}
        previous = await self._lua.stop(
            task=self._keys.task(record.queue, text_id),
            stream=self._record_stream(record),
            stats=self._keys.queue_stats(record.queue),
            followed=self._keys.followed(record.queue),
            now_ms=now_ms(),
            retention_ms=self.retention_ms,
            channel=self._keys.task_channel(record.queue, text_id),
            event=encode_done(status, code, "application/json", result),
            cancel_channel=self._keys.cancel_channel,
            task_id=text_id,
            result=result,
            status_code=code,
            status=status.value,
            statistic=field("finished", status=status.value, **labels),
            callback_state=CallbackState.NOT_SENT.value,
        )
        if previous is None:
            return None
        log.info(
            "task %s %s (queue %s, level %d): %s",
            text_id,
            status.value,
            record.queue,
            record.level,
            reason,
        )
        updated = await self.get(text_id, tenant)
        return CancelResult(Status(previous), updated or record)

    # -- the worker's side --------------------------------------------------------------
    async def load(self, queue: str, text_id: str) -> TaskRecord | None:
        """The task record as workers see it (no tenant check)."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.task(queue, text_id))
        )
        return TaskRecord.from_hash(raw) if raw else None

    async def result(self, queue: str, text_id: str) -> bytes:
        """A finished task's stored result (empty once the record is gone)."""
        body: bytes | None = await cast(
            Awaitable[bytes | None], self._redis.hget(self._keys.task(queue, text_id), "result")
        )
        return body or b""

    async def sealed_upstream_key(self, queue: str, text_id: str) -> bytes | None:
        """The caller's encrypted upstream key (passthrough auth), while the job runs."""
        key: bytes | None = await cast(
            Awaitable[bytes | None],
            self._redis.hget(self._keys.task(queue, text_id), UPSTREAM_KEY_FIELD),
        )
        return key

    async def start(self, queue: str, text_id: str, worker: str) -> TaskRecord | None:
        """Claim a task read from a stream; see `lua/start.lua`."""
        raw = await self._lua.start(
            task=self._keys.task(queue, text_id), now_ms=now_ms(), worker=worker
        )
        return TaskRecord.from_hash(raw) if raw else None

    async def ack(self, entry: StreamEntry) -> None:
        """Acknowledge and delete a stream entry whose task needs no (more) work."""
        stream = self._keys.stream(entry.queue, entry.level, entry.tenant)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, CONSUMER_GROUP, entry.entry_id)
            pipe.xdel(stream, entry.entry_id)
            await pipe.execute()

    async def requeue(self, entry: StreamEntry) -> bool:
        """Give an unfinished job back to its lane at once (see `lua/requeue.lua`)."""
        requeued = await self._lua.requeue(
            task=self._keys.task(entry.queue, entry.task_id),
            stream=self._keys.stream(entry.queue, entry.level, entry.tenant),
            entry=entry.entry_id,
            group=CONSUMER_GROUP,
            task_id=entry.task_id,
        )
        if requeued:
            await self._scheduler.mark(entry.queue, entry.level, entry.tenant)
        return requeued

    async def publish(self, queue: str, text_id: str, event: bytes) -> None:
        """Send an event (`events.encode_*`) to whoever waits on the task."""
        await self._redis.publish(self._keys.task_channel(queue, text_id), event)

    async def finish(self, record: TaskRecord, entry: str, outcome: Outcome) -> bool:
        """Store the outcome (first one wins) and ack the entry; True if this one won.

        A blocking or streaming waiter gets the body in the completion event; a callback job
        becomes due for its callback; the queue's statistics count the job.
        """
        finished = now_ms()
        callback = record.mode is ResponseMode.CALLBACK
        owed = callback and bool(record.callback_url)  # batch lines have no callback
        body = b"" if callback else outcome.body
        stored = len(body) > INLINE_RESULT_BYTES
        if stored:
            body = b""
        queue, text_id = record.queue, record.task_id
        return await self._lua.finish(
            task=self._keys.task(queue, text_id),
            stream=self._record_stream(record),
            callbacks_due=self._keys.callbacks_due(queue),
            stats=self._keys.queue_stats(queue),
            followed=self._keys.followed(queue),
            entry=entry,
            group=CONSUMER_GROUP,
            retention_ms=self.retention_ms,
            channel=self._keys.task_channel(queue, text_id),
            event=encode_done(
                outcome.status, outcome.status_code, outcome.content_type, body, stored
            ),
            callback_due_ms=finished + CALLBACK_SETTLE_MS if owed else 0,
            task_id=text_id,
            outcome=outcome.fields(finished),
            statistics=finish_counts(record, outcome, finished),
        )

    def _record_stream(self, record: TaskRecord) -> str:
        return self._keys.stream(record.queue, record.level, tenant_id(record.tenant))


def _digest(tenant: str, key: str) -> str:
    """Names a tenant's idempotency key in Redis (each tenant has keys of its own)."""
    return hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()[:32]


def _fingerprint(job: PutRequest) -> str:
    """The request's identity: equal for equal requests, however their JSON was written."""
    canonical = orjson.dumps(job.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]
