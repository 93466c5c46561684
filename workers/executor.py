"""Running one job: claim it, call its upstream within its limits, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import traceback
from typing import Any

import anyio
import orjson

from queue_service.endpoints import (
    FILE_ENDPOINTS,
    TASK_API_ENDPOINTS,
    UNFOLLOWED_TASK_ENDPOINTS,
)
from queue_service.models import TERMINAL_STATUSES, ResponseMode, Status, file_ref
from queue_service.store import STORE_ERRORS, Outcome, Store, StreamEntry, TaskRecord
from queue_service.timing import now_ms

from .adapters import ADAPTERS, TASK_APIS
from .adapters.multipart import UploadPart
from .budget_gate import Admission
from .consumer import Job
from .follower import TaskFollower
from .limiter import Limiter
from .outcomes import OutcomeRecorder, worker_deadline
from .routing import JobRoutes, UpstreamRoute
from .upstream_call import UpstreamCaller

log = logging.getLogger("workers.executor")

PARK_AFTER_S = 0.5
"""A job whose budget has no room for longer than this gives its slot back (see `_park`)."""
PARK_MOST_S = 2.0

HAND_OVER_GRACE = 5.0
"""Seconds a cancelled job waits for its task's hand-over to the followers to end."""


def _followed(endpoint: str) -> bool:
    """Whether a job on `endpoint` is followed upstream after its submit."""
    return endpoint in TASK_API_ENDPOINTS and endpoint not in UNFOLLOWED_TASK_ENDPOINTS


class Handled(enum.Enum):
    """A job that needs no outcome stored by its run."""

    SKIPPED = "skipped"
    """Gone, finished or cancelled before it started: its entry is only acknowledged."""
    PARKED = "parked"
    """Its budget has no room for a while: handed back to its lane, parked until then."""
    FOLLOWED = "followed"
    """Submitted to a task API: its upstream task is followed now (entry acknowledged)."""


class JobExecutor:
    def __init__(
        self,
        store: Store,
        caller: UpstreamCaller,
        routes: JobRoutes,
        limiter: Limiter,
        outcomes: OutcomeRecorder,
        follower: TaskFollower,
        worker_name: str,
        max_deliveries: int,
    ) -> None:
        self.tasks = store.tasks
        self.files = store.files
        self.scheduler = store.scheduler
        self.max_deliveries = max_deliveries
        self.caller = caller
        self.gate = caller.gate
        self.routes = routes
        self.limiter = limiter
        self.outcomes = outcomes
        self.follower = follower
        self.worker_name = worker_name

    async def run(self, job: Job) -> None:
        """Run one stream entry to its end; acknowledge it only once its outcome is stored."""
        entry = job.entry
        if entry.deliveries > self.max_deliveries:
            await self._give_up(entry)
            return
        try:
            ran = await self._run(entry)
        except asyncio.CancelledError:  # delivered once: the clean-up below may await
            await self._cancelled(job)
            raise
        except STORE_ERRORS:  # Redis away: the entry stays pending, to be run again
            raise
        except Exception as exc:
            await self._crashed(entry, exc)
            return
        if ran is Handled.SKIPPED:
            await self.tasks.ack(entry)
        elif not isinstance(ran, Handled):  # else followed or parked: nothing more here
            await self.outcomes.finish(entry.entry_id, *ran)

    async def _cancelled(self, job: Job) -> None:
        """Stopped mid-job: by its client (ack it) or by shutdown (hand it back at once)."""
        entry = job.entry
        if job.cancel_requested:
            await self.tasks.ack(entry)
            log.info("task %s cancelled while running", entry.task_id)
            return
        record = await self.tasks.load(entry.queue, entry.task_id)
        if record is not None and record.upstream_task_id:
            # Handed over to the follower (or handed over again): never submitted twice.
            await self.tasks.ack(entry)
            log.info("task %s: its upstream task is followed; nothing to hand back", entry.task_id)
            return
        if record is not None and record.mode is ResponseMode.STREAMING:
            # Its client may have part of the answer already: a rerun would repeat it.
            message = "the worker shut down in the middle of the stream"
            outcome = Outcome.error(Status.FAILED, 503, message, "worker_shutdown")
            await self.outcomes.finish(entry.entry_id, record, outcome)
            return
        if await self.tasks.requeue(entry):
            log.info("task %s handed back to the queue (worker shutting down)", entry.task_id)

    async def _crashed(self, entry: StreamEntry, exc: Exception) -> None:
        """A bug or an unforeseen input broke the job: it ends `failed` now, not after
        redeliveries. The log shows where (frames only: an exception's text may quote a
        request's headers, and no log line carries those)."""
        kind = type(exc).__name__
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error("task %s failed on an internal error (%s) at\n%s", entry.task_id, kind, where)
        record = await self.tasks.load(entry.queue, entry.task_id)
        if record is None or record.status in TERMINAL_STATUSES:
            await self.tasks.ack(entry)
            return
        message = f"internal error while running the job ({kind}); the worker log has details"
        outcome = Outcome.error(Status.FAILED, 500, message, "internal")
        await self.outcomes.finish(entry.entry_id, record, outcome)

    async def _give_up(self, entry: StreamEntry) -> None:
        """A job whose workers keep dying: end it instead of looping forever."""
        record = await self.tasks.load(entry.queue, entry.task_id)
        if record is None or record.status in TERMINAL_STATUSES:
            await self.tasks.ack(entry)
            return
        lost = entry.deliveries - 1
        outcome = Outcome.error(Status.FAILED, 500, f"worker lost {lost} times", "worker_lost")
        await self.outcomes.finish(entry.entry_id, record, outcome)

    async def _run(self, entry: StreamEntry) -> tuple[TaskRecord, Outcome] | Handled:
        table = self.routes.table
        if not table.has_limits and not table.has_budgets and not await self.gate.budgeted():
            return await self._start_and_call(entry)
        known = await self.tasks.load(entry.queue, entry.task_id)
        if known is None or known.status in TERMINAL_STATUSES:
            return Handled.SKIPPED
        data: dict[str, Any] = orjson.loads(known.data)
        route = self.routes.route(known, data)
        admission = None
        left_s = (known.deadline - now_ms()) / 1000  # past it: start.lua ends it, no budget
        if left_s > 0 and await self.gate.budgeted(route):
            admitted = await self.gate.admit_within(known, route, data, PARK_AFTER_S)
            if not isinstance(admitted, Admission):
                await self._park(entry, min(admitted, PARK_MOST_S, left_s))
                return Handled.PARKED
            admission = admitted
        lease = f"{self.worker_name}:{entry.task_id}"
        try:
            async with self.limiter.hold(route.limits, lease, entry.level, known.created_at):
                return await self._start_and_call(entry, route, data, admission)
        finally:
            if admission is not None and not admission.sent:
                with anyio.CancelScope(shield=True), contextlib.suppress(*STORE_ERRORS):
                    await self.gate.refund(admission)

    async def _park(self, entry: StreamEntry, wait_s: float) -> None:
        """The job's budget has no room for `wait_s`: rather than hold a slot (and leave other
        tenants' jobs waiting), hand it back to its lane and pass the lane over till then (at
        most `PARK_MOST_S`: the lane's next jobs may be for other routes)."""
        await self.scheduler.park(entry.lane, now_ms() + int(wait_s * 1000))
        await self.tasks.requeue(entry)
        log.info("task %s waits %.1fs for budget: its lane is parked", entry.task_id, wait_s)

    async def _start_and_call(
        self,
        entry: StreamEntry,
        route: UpstreamRoute | None = None,
        data: dict[str, Any] | None = None,
        admission: Admission | None = None,
    ) -> tuple[TaskRecord, Outcome] | Handled:
        """Claim the task and call its upstream (`route`, `data` and the budget it took:
        when already known)."""
        record = await self.tasks.start(entry.queue, entry.task_id, self.worker_name)
        if record is None or record.status in TERMINAL_STATUSES:
            return Handled.SKIPPED
        if record.status is Status.QUEUED or record.deadline <= now_ms():  # start.lua left it
            outcome = Outcome.error(Status.TIMEOUT, 408, "deadline passed before start", "timeout")
            return record, outcome
        log.info(
            "task %s running (queue %s, level %d) %.3fs after its put",
            entry.task_id,
            entry.queue,
            entry.level,
            ((record.started_at or record.created_at) - record.created_at) / 1000,
        )
        if record.upstream_task_id:  # submitted before (a fresh entry of a followed task)
            log.info(
                "task %s was submitted upstream before (task %s): following it, not resubmitting",
                entry.task_id,
                record.upstream_task_id,
            )
            return await self._hand_over(record, entry, record.upstream_task_id, again=True)
        outcome = await self._call(record, route, data, admission)
        if _followed(record.endpoint) and outcome.status is Status.SUCCEEDED:
            api = TASK_APIS[TASK_API_ENDPOINTS[record.endpoint]]
            upstream_task_id = api.task_id(orjson.loads(outcome.body))
            if upstream_task_id is None:  # the submit adapter answers 502 for these
                message = "the upstream's submit answer names no task"
                return record, Outcome.error(Status.FAILED, 502, message, "upstream_error")
            return await self._hand_over(record, entry, upstream_task_id)
        return record, outcome

    async def _hand_over(
        self, record: TaskRecord, entry: StreamEntry, upstream_task_id: str, again: bool = False
    ) -> Handled:
        """Hand the submitted task over to the followers. A cancel (a shutdown) landing
        meanwhile waits for the hand-over to end (for up to HAND_OVER_GRACE), so that the
        clean-up sees the task followed and neither requeues nor submits it again."""
        handing = asyncio.ensure_future(
            self.follower.hand_over(record, entry.entry_id, upstream_task_id, again=again)
        )
        try:
            await asyncio.shield(handing)
        except asyncio.CancelledError:
            await asyncio.wait([handing], timeout=HAND_OVER_GRACE)
            raise
        return Handled.FOLLOWED

    async def _call(
        self,
        record: TaskRecord,
        route: UpstreamRoute | None,
        data: dict[str, Any] | None,
        admission: Admission | None,
    ) -> Outcome:
        """Call the upstream (on `route`, or the one routing picks) within the job's deadline."""
        adapter = ADAPTERS.get(record.endpoint)
        if adapter is None:
            message = f"no adapter serves {record.endpoint}"
            return Outcome.error(Status.FAILED, 400, message, "invalid_request")
        if data is None:
            data = orjson.loads(record.data)
        route = await self.routes.with_callers_key(record, route or self.routes.route(record, data))
        if record.endpoint in FILE_ENDPOINTS:
            missing = await self._read_files(record, data)
            if missing is not None:
                message = f"the job's file {missing} is gone (it expired, or was deleted)"
                return Outcome.error(Status.FAILED, 400, message, "invalid_request")
        relay = record.mode is ResponseMode.STREAMING
        if record.endpoint in TASK_API_ENDPOINTS:  # its stream: the task's progress (follower.py)
            data.pop("stream", None)
            relay = False
        if relay:
            data["stream"] = True
        remaining = worker_deadline(record) - time.time()
        try:
            async with asyncio.timeout(remaining):
                return await self.caller.call(record, adapter, route, data, relay, admission)
        except TimeoutError:
            return Outcome.error(Status.TIMEOUT, 408, "job timed out", "timeout")

    async def _read_files(self, record: TaskRecord, data: dict[str, Any]) -> str | None:
        """Replace each `{"$file": id}` of `data` by the file's bytes, name and type (in
        place); the id of a file that is gone, if one is."""
        for name, value in data.items():
            items = value if isinstance(value, list) else [value]
            parts: list[Any] = []
            for item in items:
                file_id = file_ref(item)
                if file_id is None:
                    parts.append(item)
                    continue
                found = await self.files.get(file_id, record.tenant)
                if found is None:
                    return file_id
                content = await self.files.content(file_id)
                parts.append(UploadPart(found.filename, found.content_type, content))
            data[name] = parts if isinstance(value, list) else parts[0]
        return None
