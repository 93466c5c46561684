"""Storing a job's outcome and sending its callback, once and whole, whoever ends the job
(the executor, or the follower of an upstream task)."""

from __future__ import annotations

import asyncio
import logging

from queue_service.models import ResponseMode
from queue_service.store import Outcome, TaskRecord
from queue_service.store.tasks import Tasks
from queue_service.timing import now_ms

from .callbacks import CallbackSender

log = logging.getLogger("workers.outcomes")

WAITER_DEADLINE_GRACE = 2.0
"""A blocking or streaming job's deadline belongs to its waiting client, which cancels the job
when it passes; the worker's own cut comes this much later, as a backstop."""


def worker_deadline(record: TaskRecord) -> float:
    """When the worker stops waiting for the job's upstream (epoch seconds)."""
    deadline = record.deadline / 1000
    return deadline if record.mode is ResponseMode.CALLBACK else deadline + WAITER_DEADLINE_GRACE


class OutcomeRecorder:
    def __init__(self, tasks: Tasks, callbacks: CallbackSender) -> None:
        self.tasks = tasks
        self.callbacks = callbacks
        self._finishing: set[asyncio.Future[None]] = set()

    async def finish(self, entry: str, record: TaskRecord, outcome: Outcome) -> None:
        """Store the outcome (acknowledging `entry`) and send the callback it owes."""
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
        if won and record.mode is ResponseMode.CALLBACK and record.callback_url:
            await self.callbacks.deliver(record, outcome, attempt=1)
