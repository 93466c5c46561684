"""Following upstream tasks (Midjourney, Suno) without holding a worker slot.

A job on a task API is submitted in a slot like any job; the moment the upstream answers with
its task id, `hand_over` stores that id and acknowledges the job's stream entry in one step,
and the slot is free. From then on every worker's follower looks for due tasks (claimed with a
lease, so no two poll one task), reads them in batches of `TaskFollowPolicy.batch` per
upstream (one `list-by-condition` or `/suno/fetch` request for many tasks), records each
change (a streaming client gets it as an `event: progress`) and ends the job when its upstream
task ends, or when the job's deadline passes. A task that stays unchanged is read less often.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import httpx
import orjson

from queue_service.endpoints import TASK_API_ENDPOINTS
from queue_service.models import TERMINAL_STATUSES, ResponseMode, Status
from queue_service.store import STORE_ERRORS, Outcome, Store, TaskRecord
from queue_service.store.events import encode_chunk, encode_head
from queue_service.store.lua import Fields
from queue_service.timing import now_ms

from .adapters import TASK_APIS, TaskApi, Upstream
from .adapters.task_apis import UnreadableAnswer, UpstreamTaskState
from .limiter import Limiter
from .outcomes import OutcomeRecorder, worker_deadline
from .routing import JobRoutes, UpstreamRoute

log = logging.getLogger("workers.follower")

READ_TIMEOUT = 15.0
"""Seconds one batch read may take..."""
CLAIM_LEASE_MS = 30_000
"""...well within the lease on the tasks it reads (after which another follower may)."""
FAILED_TASK_STATUS_CODE = 502
"""The status code of a job whose upstream task ended FAILURE (its body: the task object)."""


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

    def next_look(self, now: int, changed_at: int) -> int:
        """When to read a task next (ms): half the time since it last changed, within bounds."""
        wait = min(max((now - changed_at) / 2000, self.interval), self.max_interval)
        return now + math.ceil(wait * 1000)


@dataclass(frozen=True, slots=True)
class _Followed:
    record: TaskRecord
    api: TaskApi
    route: UpstreamRoute

    @property
    def batch_key(self) -> tuple[str, Upstream]:
        return self.api.name, self.route.upstream


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
        self.tasks = store.tasks
        self.http = http
        self.routes = routes
        self.limiter = limiter
        self.outcomes = outcomes
        self.worker_name = worker_name
        self.policy = policy
        self.reads = 0
        """Batch reads this follower sent upstream."""

    async def hand_over(self, record: TaskRecord, entry: str, upstream_task_id: str) -> bool:
        """Follow the job's upstream task from now on (its entry acknowledged in the same
        step); False when the job ended while it was being submitted."""
        now = now_ms()
        fields: Fields = {"upstream_task_id": upstream_task_id, "progress_at": now}
        streaming = record.mode is ResponseMode.STREAMING
        head = encode_head(200, "text/event-stream") if streaming else b""
        next_look = now + math.ceil(self.policy.interval * 1000)
        followed = await self.following.hand_over(record, entry, fields, next_look, head)
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
            await asyncio.sleep(self.policy.look_every)

    async def look(self) -> None:
        """Read every due followed task once, a batch per request."""
        due: list[_Followed] = []
        most = self.policy.batch * 10
        for queue in await self.following.queues():
            due_by = now_ms() + math.ceil(self.policy.look_every * 1000)
            for record in await self.following.claim(queue, due_by, CLAIM_LEASE_MS, most):
                followed = await self._due(record)
                if followed is not None:
                    due.append(followed)
        due.sort(key=lambda followed: followed.batch_key)
        reads = []
        for _, group in groupby(due, key=lambda followed: followed.batch_key):
            members = list(group)
            for start in range(0, len(members), self.policy.batch):
                reads.append(self._read(members[start : start + self.policy.batch]))
        await asyncio.gather(*reads)

    async def _due(self, record: TaskRecord) -> _Followed | None:
        """The task to read, or None when it needs no read (ended, or its deadline passed)."""
        if record.status in TERMINAL_STATUSES:
            await self.following.update(record, {}, now_ms())  # it only leaves the set
            return None
        if worker_deadline(record) * 1000 <= now_ms():
            await self.outcomes.finish(record.entry, record, self._timed_out(record))
            return None
        api = TASK_APIS[TASK_API_ENDPOINTS[record.endpoint]]
        data: dict[str, Any] = orjson.loads(record.data)
        route = await self.routes.with_callers_key(record, self.routes.route(record, data))
        return _Followed(record, api, route)

    async def _read(self, batch: list[_Followed]) -> None:
        first = batch[0]
        api, route = first.api, first.route
        ids = [followed.record.upstream_task_id for followed in batch]
        lease = f"{self.worker_name}:read:{first.record.task_id}"
        try:
            async with self.limiter.hold(route.limits, lease, 0, now_ms()):
                async with asyncio.timeout(READ_TIMEOUT):
                    found = await api.fetch(self.http, route.upstream, ids)
        except (httpx.HTTPError, UnreadableAnswer, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            log.warning(
                "reading %d %s tasks failed (%s); reading later", len(ids), api.name, detail
            )
            found = {}
        self.reads += 1
        for followed in batch:
            try:
                await self._record(followed, found.get(followed.record.upstream_task_id))
            except STORE_ERRORS as exc:  # its claim runs out: it is read again then
                log.warning(
                    "task %s: could not record its upstream task (%s)", followed.record.task_id, exc
                )

    async def _record(self, followed: _Followed, task: Any) -> None:
        """Record what the upstream said of one task (None: nothing, this time)."""
        record, now = followed.record, now_ms()
        if task is None:
            changed_at = record.progress_at or now
            await self.following.update(record, {}, self.policy.next_look(now, changed_at))
            return
        body = orjson.dumps(task)
        state = followed.api.state(task)
        changed = body != record.upstream_task
        event = b""
        if changed and record.mode is ResponseMode.STREAMING:
            event = encode_chunk(b"event: progress\ndata: " + body + b"\n\n")
        if state.ended:
            if event:
                await self.tasks.publish(record.queue, record.task_id, event)
            await self.outcomes.finish(record.entry, record, _outcome(state, body))
            return
        fields: Fields = {"upstream_task": body, "progress": state.progress}
        changed_at = record.progress_at or now
        if changed:
            fields["progress_at"] = changed_at = now
        await self.following.update(record, fields, self.policy.next_look(now, changed_at), event)

    @staticmethod
    def _timed_out(record: TaskRecord) -> Outcome:
        message = (
            f"the job timed out while its upstream task {record.upstream_task_id} was still "
            f"running ({record.progress or 'no progress reported'}); the upstream has no "
            "cancel, so that task may still finish there"
        )
        return Outcome.error(Status.TIMEOUT, 408, message, "timeout")


def _outcome(state: UpstreamTaskState, body: bytes) -> Outcome:
    """A job's outcome from its ended upstream task: the task object, failed or not."""
    if state.succeeded:
        return Outcome(Status.SUCCEEDED, 200, body)
    return Outcome(Status.FAILED, FAILED_TASK_STATUS_CODE, body)
