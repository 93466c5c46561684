"""Following upstream tasks (Midjourney, Suno) without holding a worker slot.

A job on a task API is submitted in a slot like any job; the moment the upstream answers with
its task id, `hand_over` stores that id and acknowledges the job's stream entry in one step,
and the slot is free. From then on every worker's follower looks for due tasks (each claimed
for `CLAIM_LEASE_MS`: no other follower reads it meanwhile, and when this one dies it comes
due again as the lease ends), reads them in batches of `TaskFollowPolicy.batch` per upstream
(`task_reads.py`: one `list-by-condition` or `/suno/fetch` request for many tasks), records
each change (a streaming client gets it as an `event: progress`) and ends the job when its
upstream task ends, when the upstream no longer knows it (`MAX_MISSES` reads in a row), or
when the job's deadline passes. A task that stays unchanged is read less often.

One task's trouble stays its own: an error while looking at it (a record this code cannot
follow, a bug) ends that job `failed` (500, `internal`) and the follower goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from queue_service.endpoints import TASK_API_ENDPOINTS
from queue_service.models import TERMINAL_STATUSES, ResponseMode, Status
from queue_service.store import STORE_ERRORS, Outcome, Store, TaskRecord
from queue_service.store.events import encode_chunk, encode_head
from queue_service.store.following import MISSES_FIELD, READ_ERROR_FIELD, FollowedTask
from queue_service.store.lua import Fields
from queue_service.timing import backoff, now_ms

from .adapters import TASK_APIS
from .limiter import Limiter
from .outcomes import OutcomeRecorder, worker_deadline
from .routing import JobRoutes
from .task_reads import Followed, Read, batches, read_batch

log = logging.getLogger("workers.follower")

CLAIM_LEASE_MS = 30_000
"""How long a claimed task is this follower's alone: well beyond a batch read (at most
`task_reads.READ_TIMEOUT`) and the recording of what it found."""
FAILED_TASK_STATUS_CODE = 502
"""The status code of a job whose upstream task failed (Midjourney's FAILURE or CANCEL,
Suno's FAILURE; its body: the task object)."""
MAX_MISSES = 10
"""Reads in a row that do not find a task upstream before its job fails: the upstream has
forgotten it (a read that fails is no miss)."""
HAND_OVER_RETRY = (0.1, 2.0)
"""Backoff (base, cap, seconds) of a hand-over that Redis refused, tried until the deadline."""


@dataclass(frozen=True, slots=True)
class TaskFollowPolicy:
    interval: float
    """Seconds before the first read, and after a read that saw a change."""
    max_interval: float
    """The longest wait between reads of a task that does not change."""
    batch: int
    """Tasks read in one request."""

    @property
    def look_every(self) -> float:
        """Seconds between a follower's looks. A look reads the tasks due before the next
        one too, so that those due close together share reads (batches fill up)."""
        return min(self.interval / 2, 1.0)

    def next_look(self, now: int, changed_at: int, record: TaskRecord) -> int:
        """When to read a task next (ms): half the time since it last changed, within bounds,
        and no later than the job's deadline (its timeout is seen then)."""
        wait = min(max((now - changed_at) / 2000, self.interval), self.max_interval)
        return min(now + math.ceil(wait * 1000), math.ceil(worker_deadline(record) * 1000))


class TaskFollower:
    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        routes: JobRoutes,
        limiter: Limiter,
        outcomes: OutcomeRecorder,
        worker_name: str,
        policy: TaskFollowPolicy,
    ) -> None:
        self.following = store.following
        self.http = http
        self.routes = routes
        self.limiter = limiter
        self.outcomes = outcomes
        self.worker_name = worker_name
        self.policy = policy
        self.reads = 0
        """Batch reads this follower sent upstream."""
        self._claimed: dict[str, set[str]] = {}
        """Queue -> the tasks of the current look not yet recorded (`release` gives them up)."""
        self._finishing: set[asyncio.Future[None]] = set()

    async def hand_over(
        self, record: TaskRecord, entry: str, upstream_task_id: str, *, again: bool = False
    ) -> bool:
        """Follow the job's upstream task from now on (its entry acknowledged in the same
        step); False when the job ended while it was being submitted. `again`: the task was
        handed over before (a fresh entry of it was run): its entry is only acknowledged and
        its following goes on. Redis errors are tried again until the job's deadline."""
        now = now_ms()
        fields: Fields = {} if again else {"upstream_task_id": upstream_task_id, "progress_at": now}
        streaming = record.mode is ResponseMode.STREAMING and not again
        head = encode_head(200, "text/event-stream") if streaming else b""
        next_look = self.policy.next_look(now, now, record)
        retries = 0
        while True:
            try:
                followed = await self.following.hand_over(record, entry, fields, next_look, head)
                break
            except STORE_ERRORS as exc:
                retries += 1
                delay = backoff(retries, *HAND_OVER_RETRY)
                if time.time() + delay >= worker_deadline(record):
                    raise
                log.warning(
                    "task %s: could not hand over upstream task %s (%s); retry %d in %.2fs",
                    record.task_id,
                    upstream_task_id,
                    exc,
                    retries,
                    delay,
                )
                await asyncio.sleep(delay)
        log.info(
            "task %s submitted upstream as task %s; %s",
            record.task_id,
            upstream_task_id,
            "following it" if followed else "but it ended meanwhile",
        )
        return followed

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except STORE_ERRORS as exc:
                log.warning("could not look at followed tasks (%s); trying again", exc)
            except Exception:
                log.exception("looking at followed tasks failed; trying again")
            await asyncio.sleep(self.policy.look_every)

    async def look(self) -> None:
        """Read every due followed task once, a batch per request."""
        self._claimed.clear()
        due: list[Followed] = []
        most = self.policy.batch * 10
        for queue in await self.following.queues():
            due_by = now_ms() + math.ceil(self.policy.look_every * 1000)
            claimed = await self.following.claim(queue, due_by, CLAIM_LEASE_MS, most)
            self._claimed[queue] = {one.record.task_id for one in claimed}
            for one in claimed:
                followed = await self._due(one)
                if followed is not None:
                    due.append(followed)
        reads = [self._read(batch) for batch in batches(due, self.policy.batch)]
        await asyncio.gather(*reads)

    async def release(self) -> None:
        """Give up the claims of an interrupted look (the follower stopped): those tasks come
        due now, for the followers of other workers."""
        now = now_ms()
        for queue, task_ids in self._claimed.items():
            await self.following.release(queue, task_ids, now)
        self._claimed.clear()

    async def settle(self) -> None:
        """Wait for the jobs this follower is finishing."""
        await asyncio.gather(*self._finishing, return_exceptions=True)

    async def _due(self, claimed: FollowedTask) -> Followed | None:
        """The task to read, or None when it needs no read (ended, its deadline passed, or
        it cannot be followed)."""
        record = claimed.record
        try:
            if record.status in TERMINAL_STATUSES:
                await self._drop(record)
                return None
            if worker_deadline(record) * 1000 <= now_ms():
                self._finish(record, _timed_out(claimed))
                return None
            if not record.upstream_task_id:
                raise ValueError("a followed task without an upstream task id")
            api = TASK_APIS[TASK_API_ENDPOINTS[record.endpoint]]
            data: dict[str, Any] = orjson.loads(record.data)
            route = await self.routes.with_callers_key(record, self.routes.route(record, data))
        except STORE_ERRORS as exc:  # its claim runs out: it is looked at again then
            log.warning("task %s: could not look at it (%s)", record.task_id, exc)
        except Exception as exc:
            await self._crashed(record, exc)
        else:
            return Followed(claimed, api, route)
        return None

    async def _read(self, batch: list[Followed]) -> None:
        """Read a batch and record what it found of each task, all at once."""
        lease = f"{self.worker_name}:read:{batch[0].record.task_id}"
        try:
            read = await read_batch(batch, self.http, self.limiter, lease)
        except Exception as exc:
            kind = type(exc).__name__
            where = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "reading %d tasks failed on an internal error (%s) at\n%s", len(batch), kind, where
            )
            read = Read({}, f"internal error ({kind}); the worker log has details")
        self.reads += 1
        await asyncio.gather(*(self._record(followed, read) for followed in batch))

    async def _record(self, followed: Followed, read: Read) -> None:
        record = followed.record
        try:
            task = read.found.get(record.upstream_task_id)
            if task is None:
                await self._not_found(followed.claimed, read.error)
            else:
                await self._found(followed, task)
        except STORE_ERRORS as exc:  # its claim runs out: it is read again then
            log.warning("task %s: could not record its upstream task (%s)", record.task_id, exc)
        except Exception as exc:
            await self._crashed(record, exc)
        self._unclaim(record)

    async def _not_found(self, claimed: FollowedTask, error: str) -> None:
        """A read that did not answer the task: it failed (`error`), or the upstream does
        not know the task (a miss; `MAX_MISSES` in a row end the job)."""
        record, now = claimed.record, now_ms()
        fields: Fields = {READ_ERROR_FIELD: error}
        if not error:
            misses = claimed.misses + 1
            if misses >= MAX_MISSES:
                message = (
                    f"the upstream no longer knows task {record.upstream_task_id}: "
                    f"{misses} reads in a row did not find it"
                )
                self._finish(record, Outcome.error(Status.FAILED, 502, message, "upstream_error"))
                return
            fields[MISSES_FIELD] = misses
        next_look = self.policy.next_look(now, record.progress_at or now, record)
        await self.following.update(record, fields, next_look)

    async def _found(self, followed: Followed, task: Any) -> None:
        record, now = followed.record, now_ms()
        body = orjson.dumps(task)
        state = followed.api.state(task)
        changed = body != record.upstream_task
        event = b""
        if changed and record.mode is ResponseMode.STREAMING:
            event = encode_chunk(b"event: progress\ndata: " + body + b"\n\n")
        fields: Fields = {"upstream_task": body, "progress": state.progress}
        if followed.claimed.misses or followed.claimed.read_error:
            fields |= {MISSES_FIELD: 0, READ_ERROR_FIELD: ""}
        changed_at = record.progress_at or now
        if changed:
            fields["progress_at"] = changed_at = now
        if state.ended:
            # GET shows the final object the moment the job ends; held meanwhile.
            if await self.following.update(record, fields, now + CLAIM_LEASE_MS, event):
                self._finish(record, _outcome(state.succeeded, body))
            return
        await self.following.update(
            record, fields, self.policy.next_look(now, changed_at, record), event
        )

    def _finish(self, record: TaskRecord, outcome: Outcome) -> None:
        """End the job in the background: its callback is not waited for here (the finish
        itself takes the task off the followed set; failing, the claim runs out and the task
        is read again). `settle` waits for these."""
        self._unclaim(record)
        finishing = asyncio.ensure_future(self.outcomes.finish(record.entry, record, outcome))
        self._finishing.add(finishing)

        def finished(done: asyncio.Future[None]) -> None:
            self._finishing.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.warning(
                    "task %s: could not finish it (%s); it is read again later",
                    record.task_id,
                    done.exception(),
                )

        finishing.add_done_callback(finished)

    async def _crashed(self, record: TaskRecord, exc: Exception) -> None:
        """A bug or a record this code cannot follow: the job ends `failed` now, and the
        follower goes on with the others. The log shows where (frames only: an exception's
        text may quote a request's headers)."""
        kind = type(exc).__name__
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "task %s: following failed on an internal error (%s) at\n%s",
            record.task_id,
            kind,
            where,
        )
        if record.status in TERMINAL_STATUSES:
            await self._drop(record)
            return
        message = (
            f"internal error while following the job's upstream task ({kind}); "
            "the worker log has details"
        )
        self._finish(record, Outcome.error(Status.FAILED, 500, message, "internal"))

    async def _drop(self, record: TaskRecord) -> None:
        try:
            await self.following.drop(record)
        except STORE_ERRORS as exc:
            log.warning("task %s: could not stop following it (%s)", record.task_id, exc)
        self._unclaim(record)

    def _unclaim(self, record: TaskRecord) -> None:
        self._claimed.get(record.queue, set()).discard(record.task_id)


def _timed_out(claimed: FollowedTask) -> Outcome:
    record = claimed.record
    if claimed.read_error:
        where = f"could not be read (last read: {claimed.read_error})"
    elif claimed.misses:
        where = f"was not found upstream ({claimed.misses} reads in a row)"
    else:
        where = f"was still running ({record.progress or 'no progress reported'})"
    message = (
        f"the job timed out while its upstream task {record.upstream_task_id} {where}; "
        "the upstream has no cancel, so that task may still finish there"
    )
    return Outcome.error(Status.TIMEOUT, 408, message, "timeout")


def _outcome(succeeded: bool, body: bytes) -> Outcome:
    """A job's outcome from its ended upstream task: the task object, failed or not."""
    if succeeded:
        return Outcome(Status.SUCCEEDED, 200, body)
    return Outcome(Status.FAILED, FAILED_TASK_STATUS_CODE, body)
