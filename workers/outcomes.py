"""Storing a job's outcome, counting its usage and sending its callback, once and whole,
whoever ends the job (the executor, or the follower of an upstream task)."""

from __future__ import annotations

import asyncio
import logging

import orjson

from queue_service.models import ResponseMode, Status
from queue_service.store import Outcome, TaskRecord
from queue_service.store.tasks import Tasks
from queue_service.store.usage import UsageCounts, UsageSeries
from queue_service.timing import now_ms

from .callbacks import CallbackSender
from .routing import RoutingTable
from .usage import usage_of
from .usage_counter import UsageCounter

log = logging.getLogger("workers.outcomes")

WAITER_DEADLINE_GRACE = 2.0
"""A blocking or streaming job's deadline belongs to its waiting client, which cancels the job
when it passes; the worker's own cut comes this much later, as a backstop."""


def worker_deadline(record: TaskRecord) -> float:
    """When the worker stops waiting for the job's upstream (epoch seconds)."""
    deadline = record.deadline / 1000
    return deadline if record.mode is ResponseMode.CALLBACK else deadline + WAITER_DEADLINE_GRACE


class OutcomeRecorder:
    def __init__(
        self, tasks: Tasks, callbacks: CallbackSender, usage: UsageCounter, routing: RoutingTable
    ) -> None:
        self.tasks = tasks
        self.callbacks = callbacks
        self.usage = usage
        self.routing = routing
        self._finishing: set[asyncio.Future[None]] = set()

    async def finish(self, entry: str, record: TaskRecord, outcome: Outcome) -> None:
        """Store the outcome (acknowledging `entry`), count its usage and send the callback
        it owes."""
        # Shielded: once an outcome exists, a shutdown must not cut its storing or its
        # callback in half (the receiver would get it while we record it as undelivered).
        # Shutdown waits for these (`settle`), bounded by QUEUE_CALLBACK_REQUEST_TIMEOUT.
        task = asyncio.ensure_future(self._record_and_call_back(entry, record, outcome))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        await asyncio.shield(task)

    async def settle(self) -> None:
        """Wait for outcomes still being stored or called back."""
        await asyncio.gather(*self._finishing, return_exceptions=True)

    async def _record_and_call_back(self, entry: str, record: TaskRecord, outcome: Outcome) -> None:
        won = await self.tasks.finish(record, entry, outcome)
        elapsed = (now_ms() - record.created_at) / 1000
        log.info(
            "task %s %s (queue %s, level %d, status code %d) %.3fs after its put",
            record.task_id,
            outcome.status.value
            if won
            else f"{outcome.status.value}, not recorded (finished before)",
            record.queue,
            record.level,
            outcome.status_code,
            elapsed,
        )
        if won:
            self._count_usage(record, outcome)
        if won and record.mode is ResponseMode.CALLBACK and record.callback_url:
            await self.callbacks.deliver(record, outcome, attempt=1)

    def _count_usage(self, record: TaskRecord, outcome: Outcome) -> None:
        """Count the job in its tenant's usage: every job that succeeded, and any other whose
        answer reports tokens. Counted only by the finish that stored the outcome, so a
        redelivered job counts once (written within a second, see usage_counter.py)."""
        tokens = usage_of(outcome.body, outcome.content_type)
        if tokens is None and outcome.status is not Status.SUCCEEDED:
            return
        model = _requested_model(record.data)
        route = self.routing.resolve(record.endpoint, record.queue, model).name
        series = UsageSeries(record.tenant, record.queue, model[:MODEL_LABEL_CHARS], route)
        counts = UsageCounts(requests=1)
        if tokens is not None:
            counts = UsageCounts(1, tokens.prompt, tokens.completion, tokens.reasoning)
        self.usage.add(series, counts)


MODEL_LABEL_CHARS = 200
"""A model name is the caller's text: usage keeps this much of it (a label, a hash field)."""


def _requested_model(data: bytes) -> str:
    """The `model` the job asked for ("" when it names none, as task APIs do)."""
    try:
        request = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) else ""
