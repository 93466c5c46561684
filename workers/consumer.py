"""The stream consumer: XREADGROUP ... BLOCK over the level streams, online first.

Slots: `concurrency` jobs run at once; offline (level 1) jobs may use all but
`reserved_online` of them, so a long offline backlog never delays online pickup. When
nothing waits, the consumer blocks in Redis on every stream it may take work from and
wakes the moment a job is put. When an offline slot frees while the consumer is blocked
on the online streams alone, or a new queue is announced, it interrupts its own read
(CLIENT UNBLOCK) to widen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from queue_service.store.broker import Broker
from queue_service.store.keys import CONSUMER_GROUP

from .recovery import PendingKeeper

log = logging.getLogger("workers.consumer")

ONLINE, OFFLINE = 0, 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to this consumer."""

    queue: str
    level: int
    entry_id: str
    task_id: str
    deliveries: int = 1
    """How many times the entry was handed to a worker (more than once: a worker was lost)."""


JobRunner = Callable[[Entry], Coroutine[Any, Any, None]]


class StreamConsumer:
    def __init__(
        self,
        broker: Broker,
        blocking_redis: Redis,
        run_job: JobRunner,
        *,
        name: str,
        concurrency: int,
        reserved_online: int,
        queues: frozenset[str] | None,
        refresh_interval: float,
        keeper: PendingKeeper,
        reclaim_interval: float,
    ) -> None:
        self.broker = broker
        self.name = name
        self.concurrency = concurrency
        self.offline_limit = max(concurrency - reserved_online, 0)
        self._blocking = blocking_redis
        self._run_job = run_job
        self._only_queues = queues
        self._refresh_interval = refresh_interval
        self._refreshed_at = 0.0
        self._keeper = keeper
        self._reclaim_interval = reclaim_interval
        self._reclaimed_at = 0.0
        self._streams: dict[int, list[str]] = {ONLINE: [], OFFLINE: []}
        self._stream_owner: dict[bytes, tuple[str, int]] = {}
        self._running: dict[int, int] = {ONLINE: 0, OFFLINE: 0}
        self.jobs_done = 0
        self._jobs: dict[str, tuple[Entry, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        """Set when a slot frees, a queue is added or the consumer stops."""
        self._blocked_online_only = False
        self._blocking_client_id: int | None = None
        self._stopping = False
        self._unblockers: set[asyncio.Task[None]] = set()

    # -- public -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._running[ONLINE] + self._running[OFFLINE]

    def running_task(self, task_id: str) -> asyncio.Task[None] | None:
        job = self._jobs.get(task_id)
        return job[1] if job else None

    async def keep_alive(self) -> None:
        """Tell the group this worker still works on its entries (see recovery.py)."""
        owned: dict[str, list[str]] = {}
        for entry, _ in self._jobs.values():
            owned.setdefault(self.broker.keys.stream(entry.queue, entry.level), []).append(
                entry.entry_id
            )
        if owned:
            await self._keeper.touch(owned)

    def queue_added(self) -> None:
        """A queue was registered: look at the registry now, not at the next interval."""
        self._refreshed_at = 0.0
        self._wake.set()
        self._interrupt_read()

    def stop(self) -> None:
        """Take no more entries (the loop ends soon after); jobs in flight go on."""
        self._stopping = True
        self._wake.set()
        self._interrupt_read()

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for jobs in flight, then cancel the rest."""
        jobs = [job for _, job in self._jobs.values()]
        if not jobs:
            return
        _, pending = await asyncio.wait(jobs, timeout=grace)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run(self) -> None:
        """Read and dispatch entries until stopped."""
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stream read failed; retrying in 1s")
                self._blocking_client_id = None
                await asyncio.sleep(1.0)

    # -- the loop -----------------------------------------------------------------------
    async def _step(self) -> None:
        self._wake.clear()  # what happens from here on wakes the sleeps below
        await self._refresh_streams()
        free = self.concurrency - self.in_flight
        if free <= 0:
            await self._sleep(None)
            return
        offline_free = min(free, self.offline_limit - self._running[OFFLINE])
        online, offline = self._streams[ONLINE], self._streams[OFFLINE]
        if await self._reclaim(online, offline, free, offline_free):
            return
        if await self._read(online, free, block_ms=None):
            return
        if offline_free > 0 and await self._read(offline, offline_free, block_ms=None):
            return
        streams = online + offline if offline_free > 0 else online
        if not streams:
            await self._sleep(self._refresh_interval)
            return
        self._blocked_online_only = offline_free <= 0 and bool(offline)
        try:
            await self._read(streams, 1, block_ms=int(self._refresh_interval * 1000))
        finally:
            self._blocked_online_only = False

    async def _reclaim(
        self, online: list[str], offline: list[str], free: int, offline_free: int
    ) -> bool:
        """Take over entries of silent workers (online first), now and then."""
        now = time.monotonic()
        if now - self._reclaimed_at < self._reclaim_interval:
            return False
        self._reclaimed_at = now
        got = False
        for stream in online + (offline if offline_free > 0 else []):
            queue, level = self._stream_owner[stream.encode()]
            room = free if level == ONLINE else min(free, offline_free)
            if room <= 0:
                continue
            for entry_id, task_id, deliveries in await self._keeper.reclaim(stream, room):
                self._dispatch(Entry(queue, level, entry_id, task_id, deliveries))
                free -= 1
                offline_free -= level
                got = True
        return got

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for a wake-up (or the timeout)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _read(self, streams: list[str], count: int, block_ms: int | None) -> bool:
        """Read new entries and dispatch them; True when any arrived."""
        if not streams:
            return False
        if block_ms is not None and self._blocking_client_id is None:
            self._blocking_client_id = int(await self._blocking.client_id())
        redis = self._blocking if block_ms is not None else self.broker.redis
        reply = await redis.xreadgroup(
            CONSUMER_GROUP,
            self.name,
            dict.fromkeys(streams, ">"),
            count=count,
            block=block_ms,
        )
        got = False
        for stream, entries in cast(list[Any], reply or []):
            queue, level = self._stream_owner[stream]
            for entry_id, fields in entries:
                got = True
                task = fields.get(b"task", b"").decode() if fields else ""
                self._dispatch(Entry(queue, level, entry_id.decode(), task))
        return got

    def _dispatch(self, entry: Entry) -> None:
        self._running[entry.level] += 1
        job = asyncio.create_task(self._run_job(entry), name=f"job {entry.task_id}")
        self._jobs[entry.task_id] = (entry, job)
        job.add_done_callback(lambda _: self._job_done(entry))

    def _job_done(self, entry: Entry) -> None:
        self._running[entry.level] -= 1
        self.jobs_done += 1
        self._jobs.pop(entry.task_id, None)
        self._wake.set()
        if entry.level == OFFLINE and self._blocked_online_only:
            self._interrupt_read()

    def _interrupt_read(self) -> None:
        unblocker = asyncio.create_task(self._unblock())
        self._unblockers.add(unblocker)
        unblocker.add_done_callback(self._unblockers.discard)

    async def _unblock(self) -> None:
        """End the blocked read at once, so the loop reads again with what changed."""
        client_id = self._blocking_client_id
        if client_id is not None:
            try:
                await self.broker.redis.client_unblock(client_id)
            except Exception:  # the read ends by its own timeout anyway
                log.warning("could not interrupt the blocked read", exc_info=True)

    async def _refresh_streams(self) -> None:
        """Pick up queues registered since the last look (at most once per interval)."""
        now = time.monotonic()
        if now - self._refreshed_at < self._refresh_interval:
            return
        self._refreshed_at = now
        queues = await self.broker.queues()
        paused = await self.broker.paused_queues()
        names = sorted(name for name in queues if self._wanted(name) and name not in paused)
        known = {queue for queue, _ in self._stream_owner.values()}
        for name in names:
            if name not in known:
                await self.broker.ensure_groups(name)
        keys = self.broker.keys
        self._streams = {level: [keys.stream(name, level) for name in names] for level in (0, 1)}
        self._stream_owner = {
            keys.stream(name, level).encode(): (name, level) for name in names for level in (0, 1)
        }

    def _wanted(self, queue: str) -> bool:
        return self._only_queues is None or queue in self._only_queues
