"""Typed wrappers around the Lua scripts in `lua/` (loaded once, run by EVALSHA)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from redis.asyncio import Redis

Fields = dict[str, str | int | bytes]


def _load(name: str) -> str:
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


def _flatten(fields: Fields) -> list[str | int | bytes]:
    flat: list[str | int | bytes] = []
    for name, value in fields.items():
        flat += (name, value)
    return flat


class Scripts:
    """One instance per Redis client; each method is one atomic script call."""

    def __init__(self, redis: Redis) -> None:
        self._put = redis.register_script(_load("put"))
        self._start = redis.register_script(_load("start"))
        self._finish = redis.register_script(_load("finish"))
        self._cancel = redis.register_script(_load("cancel"))
        self._register_queue = redis.register_script(_load("register_queue"))
        self._update = redis.register_script(_load("update"))
        self._requeue = redis.register_script(_load("requeue"))
        self._rate_limit = redis.register_script(_load("rate_limit"))

    async def register_queue(
        self, ids_key: str, names_key: str, seq_key: str, name: str, channel: str
    ) -> int:
        """The queue's id; a new queue is announced on `channel`."""
        keys = [ids_key, names_key, seq_key]
        return int(await self._register_queue(keys=keys, args=[name, channel]))

    async def rate_limit(self, bucket_key: str, now_ms: int, rate: float, burst: int) -> int:
        """Take a token; 0 when allowed, else milliseconds until the next one."""
        return int(await self._rate_limit(keys=[bucket_key], args=[now_ms, rate, burst]))

    async def requeue(
        self, task_key: str, stream_key: str, entry: str, group: str, task_id: str
    ) -> bool:
        """Put an unfinished task back on its stream as a new entry; False if it finished."""
        return bool(await self._requeue(keys=[task_key, stream_key], args=[entry, group, task_id]))

    async def update(self, task_key: str, fields: Fields) -> bool:
        """Set fields on a task record if it still exists."""
        return bool(await self._update(keys=[task_key], args=_flatten(fields)))

    async def put(
        self,
        keys: list[str],
        task_id: str,
        ttl_ms: int,
        max_waiting: int,
        group: str,
        statistic: str,
        tenant: str,
        record: Fields,
    ) -> bytes | None:
        """Store the record and XADD the id; the entry id, or None when the queue is full.

        `keys`: task record, level stream, queue stats, queue's tenants.
        """
        args = [task_id, ttl_ms, max_waiting, group, statistic, tenant, *_flatten(record)]
        entry: bytes | None = await self._put(keys=keys, args=args)
        return entry

    async def start(self, task_key: str, now_ms: int, worker: str) -> dict[bytes, bytes] | None:
        """Mark a task running if it may run; returns its record (None when gone)."""
        flat: list[bytes] | None = await self._start(keys=[task_key], args=[now_ms, worker])
        if not flat:
            return None
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def finish(
        self,
        keys: list[str],
        entry: str,
        group: str,
        retention_ms: int,
        channel: str,
        event: bytes,
        callback_due_ms: int,
        task_id: str,
        outcome: Fields,
        statistics: dict[str, float],
    ) -> bool:
        """Store the outcome unless one is stored already; ack the entry either way.

        `keys`: task record, level stream, callbacks-due set, queue stats.
        """
        args: list[Any] = [entry, group, retention_ms, channel, event, callback_due_ms, task_id]
        args += [len(outcome), *_flatten(outcome)]
        for name, amount in statistics.items():
            args += (name, amount)
        return bool(await self._finish(keys=keys, args=args))

    async def cancel(
        self,
        task_key: str,
        stream_key: str,
        now_ms: int,
        retention_ms: int,
        channel: str,
        event: bytes,
        cancel_channel: str,
        task_id: str,
        result: bytes,
        status_code: int,
    ) -> str | None:
        """Cancel an unfinished task; returns the status it had (None: no such task)."""
        args: list[Any] = [
            now_ms,
            retention_ms,
            channel,
            event,
            cancel_channel,
            task_id,
            result,
            status_code,
        ]
        status: bytes | None = await self._cancel(keys=[task_key, stream_key], args=args)
        return status.decode() if status else None
