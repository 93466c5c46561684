"""Batches, as OpenAI's Batch API has them: a file of requests run as level-1 jobs of the
ordinary machinery, with their state read back from those jobs' task records.

A batch's record holds what was asked and when things happened; its lines (custom_id, task
id) are a list; request counts, completion and the output and error files are derived from
the task records when the batch is read, so nothing is stored twice.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from queue_service.models import TERMINAL_STATUSES, Status
from queue_service.timing import now_ms

from .keys import Keys
from .lua import LuaScripts
from .records import TaskRecord
from .tasks import Tasks

READ_LINES = 1000
"""Lines (and their task records) read per round trip."""

FINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class Batch:
    """A batch as stored (timestamps in seconds, as OpenAI's API shows them)."""

    id: str
    tenant: str
    endpoint: str
    input_file_id: str
    completion_window: str
    queue: str
    status: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None
    total: int = 0
    kind: str = "openai"
    """Whose Batch API made it: `openai`, or `anthropic` (Message Batches)."""
    webhook_url: str = ""
    """Where to announce its end (signed, as callbacks are); empty: nowhere."""
    times: dict[str, int] = field(default_factory=dict)
    """in_progress_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at,
    cancelled_at: set as the batch gets there."""

    def to_hash(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "id": self.id,
            "tenant": self.tenant,
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "queue": self.queue,
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "metadata": orjson.dumps(self.metadata).decode(),
            "errors": orjson.dumps(self.errors).decode(),
            "total": self.total,
            "kind": self.kind,
            "webhook_url": self.webhook_url,
        }
        return fields | self.times

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Batch:
        text = {name.decode(): value.decode() for name, value in raw.items()}
        times = {name: int(value) for name, value in text.items() if name.endswith("ed_at")}
        times.pop("created_at", None)
        return cls(
            id=text["id"],
            tenant=text["tenant"],
            endpoint=text["endpoint"],
            input_file_id=text["input_file_id"],
            completion_window=text["completion_window"],
            queue=text["queue"],
            status=text["status"],
            created_at=int(text["created_at"]),
            expires_at=int(text["expires_at"]),
            metadata=orjson.loads(text.get("metadata", "null")),
            errors=orjson.loads(text.get("errors", "null")),
            total=int(text.get("total", 0)),
            kind=text.get("kind", "openai"),
            webhook_url=text.get("webhook_url", ""),
            times=times,
        )


@dataclass(frozen=True, slots=True)
class Line:
    custom_id: str
    task_id: str


class Batches:
    def __init__(
        self, redis: Redis, keys: Keys, lua: LuaScripts, tasks: Tasks, retention_s: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua
        self._tasks = tasks
        self.retention_s = retention_s

    @staticmethod
    def new_id(kind: str = "openai") -> str:
        return ("msgbatch_" if kind == "anthropic" else "batch_") + secrets.token_hex(12)

    async def create(self, batch: Batch) -> None:
        """Store a new batch (and list it, in creation order)."""
        key = self._keys.batch(batch.id)
        index = self._keys.tenant_batches(batch.tenant)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=batch.to_hash())
            pipe.expire(key, self.retention_s)
            pipe.zadd(index, {batch.id: now_ms()}, nx=True)
            pipe.expire(index, self.retention_s)
            pipe.zadd(self._keys.open_batches, {batch.id: now_ms()})
            await pipe.execute()

    async def move(
        self, batch: Batch, status: str, allowed_from: Iterable[str], **fields: int | str
    ) -> bool:
        """Move the batch to `status` if it is in one of `allowed_from` (atomically, so racing
        processes never undo each other); on success `batch` says so too."""
        moved = await self._lua.batch_status(
            batch=self._keys.batch(batch.id),
            status=status,
            allowed_from=list(allowed_from),
            fields=dict(fields),
        )
        if moved and status in FINAL:
            await self._ended(batch)
        if moved:
            batch.status = status
            for name, value in fields.items():
                if name.endswith("_at") and isinstance(value, int):
                    batch.times[name] = value
                elif name == "total" and isinstance(value, int):
                    batch.total = value
                elif name == "errors" and isinstance(value, str):
                    batch.errors = orjson.loads(value)
        return moved

    async def _ended(self, batch: Batch) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._keys.open_batches, batch.id)
            if batch.webhook_url:
                pipe.zadd(self._keys.batch_webhooks_due, {batch.id: now_ms()})
            await pipe.execute()

    async def settle(self, batch: Batch) -> None:
        """End the batch when it should: its window passed (unfinished lines end `expired`),
        or every line it put ended (`completed`, or `cancelled` after a cancel). Lines still
        to be put keep an `in_progress` batch open."""
        if batch.status in FINAL:
            return
        now = now_ms() // 1000
        if now >= batch.expires_at and batch.status in ("validating", "in_progress"):
            await self.stop_unfinished(batch, "the batch expired", expire=True)
            await self.move(batch, "expired", ("validating", "in_progress"), expired_at=now)
            return
        submitted = await self.line_count(batch.id)
        if batch.status == "validating" or (
            batch.status == "in_progress" and submitted < batch.total
        ):
            return
        _, completed, failed = await self.counts(batch)
        if batch.status == "cancelling" and completed + failed < submitted:
            # lines put while the cancel went on: stop them too
            await self.stop_unfinished(batch, "the batch was cancelled", expire=False)
            _, completed, failed = await self.counts(batch)
        if completed + failed < submitted:
            return
        if batch.status == "cancelling":
            await self.move(batch, "cancelled", ["cancelling"], cancelled_at=now)
        else:
            await self.move(
                batch, "completed", ["in_progress"], finalizing_at=now, completed_at=now
            )

    async def open_ids(self) -> list[str]:
        """Batches not ended yet (those whose record expired are dropped)."""
        return [raw.decode() for raw in await self._redis.zrange(self._keys.open_batches, 0, -1)]

    async def load_any(self, batch_id: str) -> Batch | None:
        """A batch, whoever's (for the worker's sweep)."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.batch(batch_id))
        )
        if not raw:
            await self._redis.zrem(self._keys.open_batches, batch_id)
            return None
        return Batch.from_hash(raw)

    async def webhooks_due(self, limit: int = 100) -> list[str]:
        """Ended batches whose webhook should be tried now."""
        due = await self._redis.zrangebyscore(
            self._keys.batch_webhooks_due, "-inf", now_ms(), start=0, num=limit
        )
        return [raw.decode() for raw in due]

    async def webhook_attempt(self, batch_id: str) -> int:
        """Count one more delivery attempt of the batch's webhook; the attempt's number."""
        key = self._keys.batch(batch_id)
        return int(await cast(Awaitable[int], self._redis.hincrby(key, "webhook_attempts", 1)))

    async def webhook_tried(self, batch_id: str, next_attempt_ms: int | None) -> None:
        """Settled (None: delivered, or given up on) or due again at `next_attempt_ms`."""
        if next_attempt_ms is None:
            await self._redis.zrem(self._keys.batch_webhooks_due, batch_id)
        else:
            await self._redis.zadd(self._keys.batch_webhooks_due, {batch_id: next_attempt_ms})

    async def file_size(self, batch_id: str, kind: str) -> int | None:
        """The size of an ended batch's `output` or `errors` file, once measured."""
        raw = await cast(
            Awaitable[bytes | None], self._redis.hget(self._keys.batch(batch_id), f"{kind}_bytes")
        )
        return int(raw) if raw is not None else None

    async def keep_file_size(self, batch_id: str, kind: str, size: int) -> None:
        await cast(
            Awaitable[int], self._redis.hset(self._keys.batch(batch_id), f"{kind}_bytes", str(size))
        )

    async def status(self, batch_id: str) -> str | None:
        raw = await cast(
            Awaitable[bytes | None], self._redis.hget(self._keys.batch(batch_id), "status")
        )
        return raw.decode() if raw else None

    async def add_lines(self, batch_id: str, lines: list[Line]) -> None:
        if lines:
            key = self._keys.batch_lines(batch_id)
            entries = [orjson.dumps([line.custom_id, line.task_id]) for line in lines]
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, *entries)
                pipe.expire(key, self.retention_s)
                await pipe.execute()

    async def load(self, batch_id: str, tenant: str) -> Batch | None:
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.batch(batch_id))
        )
        if not raw:
            return None
        batch = Batch.from_hash(raw)
        return batch if batch.tenant == tenant else None

    async def hold_submission(self, batch_id: str, token: str, ttl_ms: int) -> bool:
        """Take (or keep) the right to put the batch's lines; False while another has it."""
        key = self._keys.batch_submitter(batch_id)
        if await self._redis.set(key, token, nx=True, px=ttl_ms):
            return True
        if await self._redis.get(key) == token.encode():
            await self._redis.pexpire(key, ttl_ms)
            return True
        return False

    async def line_count(self, batch_id: str) -> int:
        return int(await cast(Awaitable[int], self._redis.llen(self._keys.batch_lines(batch_id))))

    async def ids(self, tenant: str) -> list[str]:
        """The tenant's batch ids, newest first (expired ones are dropped from the index)."""
        index = self._keys.tenant_batches(tenant)
        ids = [raw.decode() for raw in await self._redis.zrevrange(index, 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.exists(self._keys.batch(batch_id))
            alive = await pipe.execute()
        gone = [batch_id for batch_id, exists in zip(ids, alive, strict=True) if not exists]
        if gone:
            await self._redis.zrem(index, *gone)
        return [batch_id for batch_id, exists in zip(ids, alive, strict=True) if exists]

    async def lines(self, batch_id: str) -> AsyncIterator[list[Line]]:
        """The batch's lines, `READ_LINES` at a time, in the file's order."""
        key, start = self._keys.batch_lines(batch_id), 0
        while True:
            raw = await cast(
                Awaitable[list[bytes]], self._redis.lrange(key, start, start + READ_LINES - 1)
            )
            if not raw:
                return
            yield [Line(*orjson.loads(entry)) for entry in raw]
            start += len(raw)

    async def records(
        self, queue: str, lines: Iterable[Line]
    ) -> list[tuple[Line, TaskRecord | None]]:
        """Each line with its task record (None once the record expired)."""
        lines = list(lines)
        async with self._redis.pipeline(transaction=False) as pipe:
            for line in lines:
                pipe.hgetall(self._keys.task(queue, line.task_id))
            raws = await pipe.execute()
        return [
            (line, TaskRecord.from_hash(raw) if raw else None)
            for line, raw in zip(lines, raws, strict=True)
        ]

    async def tally(self, batch: Batch) -> Counter[Status | None]:
        """How many of the batch's lines are in each status (None: the record expired), from
        the task records' status fields alone."""
        statuses: Counter[Status | None] = Counter()
        async for lines in self.lines(batch.id):
            async with self._redis.pipeline(transaction=False) as pipe:
                for line in lines:
                    pipe.hget(self._keys.task(batch.queue, line.task_id), "status")
                for raw in await pipe.execute():
                    statuses[Status(raw.decode()) if raw else None] += 1
        return statuses

    async def counts(self, batch: Batch) -> tuple[int, int, int]:
        """(total, completed, failed) request counts, from the task records; once the batch
        ended, lines never put (it was cancelled or expired first) count as failed."""
        statuses = await self.tally(batch)
        completed = statuses[Status.SUCCEEDED]
        failed = statuses[None] + sum(statuses[s] for s in TERMINAL_STATUSES - {Status.SUCCEEDED})
        if batch.status in FINAL:
            failed += max(batch.total - statuses.total(), 0)
        return batch.total, completed, failed

    async def stop_unfinished(self, batch: Batch, reason: str, *, expire: bool) -> None:
        """Stop every line still queued or running (cancel, or time out when it expired)."""
        async for lines in self.lines(batch.id):
            async with self._redis.pipeline(transaction=False) as pipe:
                for line in lines:
                    pipe.hget(self._keys.task(batch.queue, line.task_id), "status")
                statuses = await pipe.execute()
            for line, raw in zip(lines, statuses, strict=True):
                if raw is not None and Status(raw.decode()) not in TERMINAL_STATUSES:
                    if expire:
                        await self._tasks.time_out(line.task_id, batch.tenant, reason)
                    else:
                        await self._tasks.cancel(line.task_id, batch.tenant, reason)
