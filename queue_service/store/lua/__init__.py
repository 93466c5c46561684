"""Typed wrappers of the Lua scripts beside this file: loaded once, run by EVALSHA.

Each wrapper is one atomic step; its keyword parameters name the keys (KEYS) and arguments
(ARGV) that the script's header documents, in the same order.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

Fields = dict[str, str | int | bytes]
"""A Redis hash's fields, as the scripts take them (flattened to name/value pairs)."""


def _source(name: str) -> str:
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


def _flatten(fields: Fields | dict[str, float]) -> list[Any]:
    flat: list[Any] = []
    for name, value in fields.items():
        flat += (name, value)
    return flat


class LuaScripts:
    """The scripts of one Redis client."""

    def __init__(self, redis: Redis) -> None:
        def load(name: str) -> AsyncScript:
            return redis.register_script(_source(name))

        self._put = load("put")
        self._start = load("start")
        self._finish = load("finish")
        self._stop = load("stop")
        self._requeue = load("requeue")
        self._update = load("update")
        self._register_queue = load("register_queue")
        self._rate_limit = load("rate_limit")
        self._limit_acquire = load("limit_acquire")
        self._instance_lease = load("instance_lease")
        self._remove_queue = load("remove_queue")
        self._batch_status = load("batch_status")
        self._ensure_groups = load("ensure_groups")
        self._callback_attempt = load("callback_attempt")
        self._budget_take = load("budget_take")
        self._budget_adjust = load("budget_adjust")
        self._mark = load("mark")
        self._pick = load("pick")
        self._settle = load("settle")
        self._follow = load("follow")
        self._claim_followed = load("claim_followed")

    async def put(
        self,
        *,
        task: str,
        stream: str,
        stats: str,
        tenants: str,
        meta: str,
        task_id: str,
        ttl_ms: int,
        max_waiting: int,
        group: str,
        statistic: str,
        tenant: str,
        queue_id: int,
        expires_at_ms: int,
        record: Fields,
        idempotency: str | None = None,
        fingerprint: str = "",
    ) -> bytes | None:
        """Store the record and XADD the id; the entry id, or None when the level is full.

        ResponseError STALE: the queue is not registered under `queue_id` (any more);
        IDEMPOTENT <fingerprint> <task id>: the `idempotency` key was used already."""
        args: list[Any] = [
            task_id,
            ttl_ms,
            max_waiting,
            group,
            statistic,
            tenant,
            queue_id,
            expires_at_ms,
            fingerprint,
        ]
        args += _flatten(record)
        keys = [task, stream, stats, tenants, meta]
        if idempotency is not None:
            keys.append(idempotency)
        entry: bytes | None = await self._put(keys=keys, args=args)
        return entry

    async def start(self, *, task: str, now_ms: int, worker: str) -> dict[bytes, bytes] | None:
        """Mark a task running if it may run; returns its record (None when gone)."""
        flat: list[bytes] | None = await self._start(keys=[task], args=[now_ms, worker])
        if not flat:
            return None
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def finish(
        self,
        *,
        task: str,
        stream: str,
        callbacks_due: str,
        stats: str,
        followed: str,
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
        """Store the outcome unless one is stored already; ack the entry either way."""
        args: list[Any] = [entry, group, retention_ms, channel, event, callback_due_ms, task_id]
        args += [len(outcome), *_flatten(outcome), *_flatten(statistics)]
        keys = [task, stream, callbacks_due, stats, followed]
        return bool(await self._finish(keys=keys, args=args))

    async def stop(
        self,
        *,
        task: str,
        stream: str,
        stats: str,
        followed: str,
        now_ms: int,
        retention_ms: int,
        channel: str,
        event: bytes,
        cancel_channel: str,
        task_id: str,
        result: bytes,
        status_code: int,
        status: str,
        statistic: str,
        callback_state: str,
    ) -> str | None:
        """End an unfinished task with `status`; returns the status it had (None: no task)."""
        args: list[Any] = [
            now_ms,
            retention_ms,
            channel,
            event,
            cancel_channel,
            task_id,
            result,
            status_code,
            status,
            statistic,
            callback_state,
        ]
        previous: bytes | None = await self._stop(keys=[task, stream, stats, followed], args=args)
        return previous.decode() if previous else None

    async def requeue(
        self, *, task: str, stream: str, entry: str, group: str, task_id: str
    ) -> bool:
        """Put an unfinished task back on its stream as a new entry; False if it finished."""
        return bool(await self._requeue(keys=[task, stream], args=[entry, group, task_id]))

    async def update(self, *, task: str, fields: Fields) -> bool:
        """Set fields on a task record if it still exists."""
        return bool(await self._update(keys=[task], args=_flatten(fields)))

    async def register_queue(
        self,
        *,
        ids: str,
        names: str,
        sequence: str,
        meta: str,
        streams: tuple[str, str],
        name: str,
        announce_channel: str,
        group: str,
        preferred_id: int,
        max_queues: int,
    ) -> int:
        """The queue's id (`preferred_id` when free); a new queue is announced.

        ResponseError TOO_MANY_QUEUES: a new queue would pass `max_queues`."""
        keys = [ids, names, sequence, meta, *streams]
        args: list[Any] = [name, announce_channel, group, preferred_id, max_queues]
        return int(await self._register_queue(keys=keys, args=args))

    async def remove_queue(
        self,
        *,
        ids: str,
        names: str,
        meta: str,
        stats: str,
        tenants: str,
        callbacks_due: str,
        paused: str,
        followed: str,
        followed_queues: str,
        lanes: list[str],
        name: str,
        now_ms: int,
        idle_ms: int,
        announce_channel: str,
        tenant_count: int,
    ) -> bool:
        """Remove a queue idle for `idle_ms` (nothing waiting, running or owed); else False."""
        keys = [ids, names, meta, stats, tenants, callbacks_due, paused, followed]
        keys += [followed_queues, *lanes]
        args: list[Any] = [name, now_ms, idle_ms, announce_channel, tenant_count]
        return bool(await self._remove_queue(keys=keys, args=args))

    async def instance_lease(self, *, lease: str, token: str, ttl_ms: int) -> bool:
        """Hold (or take) an instance number's lease; False when another process holds it."""
        return bool(await self._instance_lease(keys=[lease], args=[token, ttl_ms]))

    async def rate_limit(self, *, bucket: str, now_ms: int, rate: float, burst: int) -> int:
        """Take a token; 0 when allowed, else milliseconds until the next one."""
        return int(await self._rate_limit(keys=[bucket], args=[now_ms, rate, burst]))

    async def limit_acquire(
        self,
        *,
        leases: str,
        waiters: str,
        waiter_expiry: str,
        now_ms: int,
        size: int,
        lease: str,
        score: int,
        lease_ttl_ms: int,
        waiter_ttl_ms: int,
    ) -> bool:
        """Take a slot of a shared concurrency limit, in priority order; False: wait."""
        args: list[Any] = [now_ms, size, lease, score, lease_ttl_ms, waiter_ttl_ms]
        return bool(await self._limit_acquire(keys=[leases, waiters, waiter_expiry], args=args))

    async def batch_status(
        self, *, batch: str, status: str, allowed_from: list[str], fields: Fields
    ) -> bool:
        """Set a batch's status (and `fields`) if it is one of `allowed_from` now."""
        args: list[Any] = [status, ",".join(allowed_from), *_flatten(fields)]
        return bool(await self._batch_status(keys=[batch], args=args))

    async def ensure_groups(self, *, meta: str, lanes: list[str], group: str) -> bool:
        """Create a registered queue's missing lanes and group; False: not registered."""
        return bool(await self._ensure_groups(keys=[meta, *lanes], args=[group]))

    async def follow(
        self,
        *,
        task: str,
        stream: str,
        followed: str,
        task_id: str,
        next_look_ms: int,
        entry: str,
        group: str,
        channel: str,
        event: bytes,
        fields: Fields,
    ) -> bool:
        """Record a followed task's upstream state and next look (acking `entry` if given);
        False when the task has ended."""
        args: list[Any] = [task_id, next_look_ms, entry, group, channel, event, *_flatten(fields)]
        return bool(await self._follow(keys=[task, stream, followed], args=args))

    async def claim_followed(
        self, *, followed: str, due_by: int, lease_ms: int, most: int
    ) -> list[str]:
        """The ids of followed tasks due by `due_by`, each leased for `lease_ms` more."""
        claimed: list[bytes] = await self._claim_followed(
            keys=[followed], args=[due_by, lease_ms, most]
        )
        return [task_id.decode() for task_id in claimed]

    async def mark(
        self,
        *,
        ready_tenants: str,
        ready_queues: str,
        marks: str,
        passes: str,
        wake: str,
        filtered: str,
        queue_wake: str,
        tenant: str,
        queue: str,
    ) -> None:
        """Mark a lane as maybe holding work, and wake an idle worker."""
        keys = [ready_tenants, ready_queues, marks, passes, wake, filtered, queue_wake]
        await self._mark(keys=keys, args=[tenant, queue])

    async def pick(
        self,
        *,
        ready_tenants: str,
        marks: str,
        passes: str,
        weights: str,
        paused: str,
        active: str,
        parked: str,
        ready_queues_prefix: str,
        count: int,
        now_ms: int,
        level: int,
        most_looks: int,
        serves: list[str],
    ) -> tuple[str, str, int] | None:
        """The next lane to read at `level` (queue, tenant id, mark count), its share charged
        for `count` entries; None when no lane is ready."""
        keys = [ready_tenants, marks, passes, weights, paused, active, parked]
        args: list[Any] = [ready_queues_prefix, count, now_ms, level, most_looks, *serves]
        picked: list[bytes] | None = await self._pick(keys=keys, args=args)
        if not picked:
            return None
        queue, tenant, mark = picked
        return queue.decode(), tenant.decode(), int(mark)

    async def settle(
        self,
        *,
        ready_tenants: str,
        ready_queues: str,
        marks: str,
        passes: str,
        weights: str,
        tenant: str,
        queue: str,
        mark: int,
        unused: int,
    ) -> bool:
        """Give back a pick's unused share; drop its lane from the ready sets unless marked
        since. True when dropped."""
        keys = [ready_tenants, ready_queues, marks, passes, weights]
        return bool(await self._settle(keys=keys, args=[tenant, queue, mark, unused]))

    async def budget_take(
        self,
        *,
        cooldown: str,
        buckets: list[str],
        now_ms: int,
        size_amount_need: list[float],
    ) -> int:
        """Take from every bucket at once: 0, or the milliseconds to wait first."""
        args: list[Any] = [now_ms, *size_amount_need]
        return int(await self._budget_take(keys=[cooldown, *buckets], args=args))

    async def budget_adjust(self, *, bucket: str, tokens: float, size: float) -> None:
        """Add `tokens` to a bucket (negative: take them), within its size."""
        await self._budget_adjust(keys=[bucket], args=[tokens, size])

    async def callback_attempt(
        self,
        *,
        task: str,
        stats: str,
        callbacks_due: str,
        task_id: str,
        statistic: str,
        due_ms: int | None,
        fields: Fields,
    ) -> None:
        """Note a callback attempt on the record, the statistics and its due time."""
        keys = [task, stats, callbacks_due]
        args: list[Any] = [task_id, statistic, "" if due_ms is None else due_ms]
        await self._callback_attempt(keys=keys, args=[*args, *_flatten(fields)])
