"""The stream consumer: takes jobs from the lanes the scheduler picks, online first.

Slots: `concurrency` jobs run at once; offline (level 1) jobs may use all but
`reserved_online` of them, so a long offline backlog never delays online pickup. With room
at a level, the consumer asks the scheduler (store/scheduler.py) for the next lane of that
level, fairly shared between tenants and queues across every worker, and reads up to its
room from that one stream: a pass costs the same with one queue or thousands. When nothing
is ready it blocks in Redis on the levels' wake lists (the online one alone while offline
slots are full) and wakes the moment a job is put. When an offline slot frees while it waits
on the online list alone, it interrupts its own wait to widen it.

Entries of silent workers are taken over now and then, from the lanes workers have read
lately where other workers hold entries. An entry that arrives while
there is no room (a race with a slot's use) is handed back to its lane at once, for
whichever worker has room, rather than held here while other workers idle.

The consumer owns its running jobs: `cancel` stops one (its client cancelled it) and marks
it so the executor acknowledges it instead of handing it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from queue_service.errors import StreamsLost
from queue_service.store import Lane, Store, StreamEntry, StreamReader

log = logging.getLogger("workers.consumer")

ONLINE, OFFLINE = 0, 1
ACTIVE_LANE_TTL_MS = 3_600_000
"""A lane nobody read from for an hour leaves the set looked at for silent workers' entries
(they were taken over long before)."""


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
        idle_wait: float,
        reclaim_interval: float,
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self.offline_limit = max(concurrency - reserved_online, 0)
        self._reader = reader
        self._run_job = run_job
        self._only_queues = queues
        self._idle_wait = idle_wait
        self._reclaim_interval = reclaim_interval
        self._running: dict[int, int] = {ONLINE: 0, OFFLINE: 0}
        self.jobs_done = 0
        self._jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._handing_back: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        """Set when a slot frees, the queues change or the consumer stops."""
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
        """Tell the group this worker still works on its entries (see store/streams.py), and
        keep their lanes where take-overs look, should this worker die."""
        entries = [job.entry for job, _ in self._jobs.values()]
        await self._reader.touch(entries)
        await self.store.scheduler.note_active({entry.lane for entry in entries})

    async def hand_back(self) -> None:
        """Wait until the entries read beyond the room there was are back in their queues."""
        await asyncio.gather(*self._handing_back, return_exceptions=True)

    def queues_changed(self) -> None:
        """A queue was added, paused or resumed: look for work again now."""
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
                log.warning("%s; going on", exc)
                await asyncio.sleep(0.05)
            except Exception:
                log.exception("stream read failed; retrying in 1s")
                await asyncio.sleep(1.0)

    # -- the loop -----------------------------------------------------------------------
    async def _step(self) -> None:
        self._wake.clear()  # what happens from here on wakes the sleeps below
        if self._room(ONLINE) <= 0:
            await self._sleep(None)
            return
        if await self._take(ONLINE):
            return
        offline_room = self._room(OFFLINE) > 0
        if offline_room and await self._take(OFFLINE):
            return
        self._blocked_online_only = not offline_room
        try:
            levels = [ONLINE, OFFLINE] if offline_room else [ONLINE]
            await self._reader.wait_for_work(levels, self._idle_wait, self._only_queues)
        finally:
            self._blocked_online_only = False

    def _room(self, level: int) -> int:
        """How many more jobs of this level may start now."""
        free = self.concurrency - self.in_flight
        if level == OFFLINE:
            free = min(free, self.offline_limit - self._running[OFFLINE])
        return free

    async def _take(self, level: int) -> bool:
        """Read from the lane the scheduler picks at this level; False when none is ready."""
        room = self._room(level)
        scheduler = self.store.scheduler
        pick = await scheduler.pick(level, room, self._only_queues)
        if pick is None:
            return False
        try:
            entries = await self._reader.read(pick.lane, room)
        except StreamsLost:  # Redis lost the lane: recreate what is registered, drop the pick
            await self.store.queues.ensure_groups(pick.lane.queue)
            entries = []
        for entry in entries:  # started before the settle, which may fail
            self._start(entry)
        if len(entries) < room:
            await scheduler.settle(pick, len(entries))
        return True

    async def reclaim_forever(self) -> None:
        """Take over entries of silent workers (online first) every `reclaim_interval`, beside
        the read loop (a pass over thousands of lanes never holds up a pick)."""
        while not self._stopping:
            await asyncio.sleep(self._reclaim_interval)
            try:
                await self._reclaim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not look for silent workers' entries", exc_info=True)

    async def _reclaim(self) -> None:
        for lane in await self._lanes_to_reclaim():
            room = self._room(lane.level)
            if room <= 0 or self._stopping:
                continue
            with contextlib.suppress(StreamsLost):
                for entry in await self._reader.reclaim(lane, room):
                    if entry.task_id in self._jobs:  # its own, still running: kept alive
                        continue
                    if self._room(entry.level) > 0:
                        self._dispatch(entry)
                    # else: no room after all; it stays pending, idle, for the next pass

    async def _lanes_to_reclaim(self) -> list[Lane]:
        """The lanes read lately where entries are held (those idle past the visibility
        timeout are taken over: a live worker keeps its own fresh), of unpaused queues this
        worker serves. Lanes that hold nothing and were not read for an hour are forgotten."""
        scheduler = self.store.scheduler
        paused = await self.store.queues.paused()
        held: list[Lane] = []
        forgotten: list[Lane] = []
        async for page in scheduler.active_lanes(idle_ms=ACTIVE_LANE_TTL_MS):
            holders = await self._reader.holders([lane for lane, _ in page])
            for (lane, idle), names in zip(page, holders, strict=True):
                if not names:
                    if idle:
                        forgotten.append(lane)
                elif lane.queue not in paused and self._serves(lane.queue):
                    held.append(lane)
        await scheduler.forget_active(forgotten)
        return sorted(held, key=lambda lane: lane.level)

    def _serves(self, queue: str) -> bool:
        return self._only_queues is None or queue in self._only_queues

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for a wake-up (or the timeout)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _start(self, entry: StreamEntry) -> None:
        """Start an entry now if its level has room, else hand it back to its queue."""
        if self._room(entry.level) > 0:
            self._dispatch(entry)
            return
        handing = asyncio.create_task(self._hand_back(entry))
        self._handing_back.add(handing)
        handing.add_done_callback(self._handing_back.discard)

    async def _hand_back(self, entry: StreamEntry) -> None:
        try:
            await self.store.tasks.requeue(entry)
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
