"""The stream consumer: XREADGROUP ... BLOCK over the level streams, online first.

Slots: `concurrency` jobs run at once; offline (level 1) jobs may use all but
`reserved_online` of them, so a long offline backlog never delays online pickup. When
nothing waits, the consumer blocks in Redis on every stream it may take work from and
wakes the moment a job is put. When an offline slot frees while the consumer is blocked
on the online streams alone, or a new queue is announced, it interrupts its own read
to widen it.

A worker never runs more jobs than its slots (nor more offline jobs than its offline
slots): XREADGROUP's COUNT holds per stream, so one read over many streams can hand over
more entries than there is room for; those are handed back to their queue at once (as new
entries at its end), for whichever worker has room, rather than held here while other
workers idle.

The consumer owns its running jobs: `cancel` stops one (its client cancelled it) and marks
it so the executor acknowledges it instead of handing it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from queue_service.errors import StreamsLost
from queue_service.store import Store, StreamEntry, StreamReader
from queue_service.store.streams import Source

log = logging.getLogger("workers.consumer")

ONLINE, OFFLINE = 0, 1


@dataclass(slots=True)
class Job:
    """A stream entry this worker runs, and whether its client cancelled it."""

    entry: StreamEntry
    cancel_requested: bool = False


JobRunner = Callable[[Job], Coroutine[Any, Any, None]]


class StreamConsumer:
    def __init__(
        self,
        store: Store,
        reader: StreamReader,
        run_job: JobRunner,
        *,
        concurrency: int,
        reserved_online: int,
        queues: frozenset[str] | None,
        refresh_interval: float,
        reclaim_interval: float,
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self.offline_limit = max(concurrency - reserved_online, 0)
        self._reader = reader
        self._run_job = run_job
        self._only_queues = queues
        self._refresh_interval = refresh_interval
        self._refreshed_at = 0.0
        self._reclaim_interval = reclaim_interval
        self._reclaimed_at = 0.0
        self._sources: dict[int, list[Source]] = {ONLINE: [], OFFLINE: []}
        self._known: set[str] = set()
        self._running: dict[int, int] = {ONLINE: 0, OFFLINE: 0}
        self.jobs_done = 0
        self._jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._handing_back: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        """Set when a slot frees, a queue is added or the consumer stops."""
        self._blocked_online_only = False
        self._stopping = False
        self._unblockers: set[asyncio.Task[None]] = set()

    # -- public -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._running[ONLINE] + self._running[OFFLINE]

    def cancel(self, task_id: str) -> bool:
        """Stop a running job whose task was cancelled; False when it does not run here."""
        running = self._jobs.get(task_id)
        if running is None:
            return False
        job, task = running
        job.cancel_requested = True
        task.cancel()
        return True

    async def keep_alive(self) -> None:
        """Tell the group this worker still works on its entries (see store/streams.py)."""
        await self._reader.touch([job.entry for job, _ in self._jobs.values()])

    async def hand_back(self) -> None:
        """Wait until the entries read beyond the room there was are back in their queues."""
        await asyncio.gather(*self._handing_back, return_exceptions=True)

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
        tasks = [task for _, task in self._jobs.values()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run(self) -> None:
        """Read and dispatch entries until stopped."""
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except StreamsLost as exc:
                log.warning("%s; looking at the queue registry again", exc)
                self._known.clear()  # recreate the groups of what is still registered
                self._refreshed_at = 0.0
                await asyncio.sleep(0.05)
            except Exception:
                log.exception("stream read failed; retrying in 1s")
                await asyncio.sleep(1.0)

    # -- the loop -----------------------------------------------------------------------
    async def _step(self) -> None:
        self._wake.clear()  # what happens from here on wakes the sleeps below
        await self._refresh_sources()
        if self._room(ONLINE) <= 0:
            await self._sleep(None)
            return
        online, offline = self._sources[ONLINE], self._sources[OFFLINE]
        if await self._reclaim(online, offline):
            return
        if await self._read(online, self._room(ONLINE), block_ms=None):
            return
        offline_room = self._room(OFFLINE)
        if offline_room > 0 and await self._read(offline, offline_room, block_ms=None):
            return
        sources = online + offline if offline_room > 0 else online
        if not sources:
            await self._sleep(self._refresh_interval)
            return
        self._blocked_online_only = offline_room <= 0 and bool(offline)
        try:
            await self._read(sources, 1, block_ms=int(self._refresh_interval * 1000))
        finally:
            self._blocked_online_only = False

    def _room(self, level: int) -> int:
        """How many more jobs of this level may start now."""
        free = self.concurrency - self.in_flight
        if level == OFFLINE:
            free = min(free, self.offline_limit - self._running[OFFLINE])
        return free

    async def _reclaim(self, online: list[Source], offline: list[Source]) -> bool:
        """Take over entries of silent workers (online first), now and then."""
        now = time.monotonic()
        if now - self._reclaimed_at < self._reclaim_interval:
            return False
        self._reclaimed_at = now
        got = False
        for source in online + (offline if self._room(OFFLINE) > 0 else []):
            room = self._room(source[1])
            if room <= 0:
                continue
            for entry in await self._reader.reclaim(source, room):
                self._take(entry)
                got = True
        return got

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for a wake-up (or the timeout)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _read(self, sources: list[Source], count: int, block_ms: int | None) -> bool:
        """Read new entries and dispatch them; True when any arrived."""
        entries = await self._reader.read(sources, count, block_ms)
        for entry in entries:
            self._take(entry)
        return bool(entries)

    def _take(self, entry: StreamEntry) -> None:
        """Start an entry now if its level has room, else hand it back to its queue."""
        if self._room(entry.level) > 0:
            self._dispatch(entry)
            return
        handing = asyncio.create_task(self._hand_back(entry))
        self._handing_back.add(handing)
        handing.add_done_callback(self._handing_back.discard)

    async def _hand_back(self, entry: StreamEntry) -> None:
        try:
            await self.store.tasks.requeue(entry.queue, entry.level, entry.task_id, entry.entry_id)
        except Exception:  # it stays in this worker's pending list: taken over in time
            log.warning("could not hand %s back to its queue", entry.task_id, exc_info=True)

    def _dispatch(self, entry: StreamEntry) -> None:
        self._running[entry.level] += 1
        job = Job(entry)
        task = asyncio.create_task(self._run_job(job), name=f"job {entry.task_id}")
        self._jobs[entry.task_id] = (job, task)
        task.add_done_callback(lambda _: self._job_done(entry))

    def _job_done(self, entry: StreamEntry) -> None:
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
        try:
            await self._reader.interrupt()
        except Exception:  # the read ends by its own timeout anyway
            log.warning("could not interrupt the blocked read", exc_info=True)

    async def _refresh_sources(self) -> None:
        """Pick up queues registered since the last look (at most once per interval)."""
        now = time.monotonic()
        if now - self._refreshed_at < self._refresh_interval:
            return
        self._refreshed_at = now
        queues = await self.store.queues.all()
        paused = await self.store.queues.paused()
        names = sorted(name for name in queues if self._wanted(name) and name not in paused)
        for name in names:
            if name not in self._known:
                await self.store.queues.ensure_groups(name)
        self._known = set(names)
        self._sources = {level: [(name, level) for name in names] for level in (ONLINE, OFFLINE)}

    def _wanted(self, queue: str) -> bool:
        return self._only_queues is None or queue in self._only_queues
