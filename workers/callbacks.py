"""Callback delivery: POST the outcome to `callback_url`, at once, then retried through arq."""

from __future__ import annotations

import logging
import random
from typing import Any

import httpx
import orjson
from arq.connections import ArqRedis

from queue_service.broker import Broker
from queue_service.task import Outcome, TaskRecord

log = logging.getLogger("workers.callbacks")

DELIVER_CALLBACK = "deliver_callback"


def callback_body(record: TaskRecord, outcome: Outcome) -> bytes:
    return orjson.dumps(
        {
            "task_id": record.task_id,
            "request_id": record.task_id,
            "status": outcome.status.value,
            "status_code": outcome.status_code,
            "body": outcome.body_value(),
        }
    )


class CallbackSender:
    def __init__(
        self,
        http: httpx.AsyncClient,
        broker: Broker,
        arq: ArqRedis,
        *,
        arq_queue: str,
        max_attempts: int,
        backoff: float,
        backoff_max: float,
    ) -> None:
        self.http = http
        self.broker = broker
        self.arq = arq
        self.arq_queue = arq_queue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter before attempt `attempt + 1`."""
        ceiling = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
        return random.uniform(ceiling / 2, ceiling)

    async def deliver(self, record: TaskRecord, outcome: Outcome, attempt: int) -> bool:
        """One delivery attempt; schedules the next one when the receiver failed."""
        error = await self._post(record, outcome)
        if error is None:
            await self.broker.record_callback(record, "delivered", attempt, None)
            log.info("task %s callback delivered (attempt %d)", record.task_id, attempt)
            return True
        retryable, message = error
        if retryable and attempt < self.max_attempts:
            delay = self.delay(attempt)
            await self.broker.record_callback(record, "retrying", attempt, message)
            await self.arq.enqueue_job(
                DELIVER_CALLBACK,
                record.queue,
                record.task_id,
                attempt + 1,
                _job_id=f"callback:{record.task_id}:{attempt + 1}",
                _queue_name=self.arq_queue,
                _defer_by=delay,
            )
            log.warning(
                "task %s callback attempt %d failed (%s); retry in %.1fs",
                record.task_id,
                attempt,
                message,
                delay,
            )
        else:
            await self.broker.record_callback(record, "failed", attempt, message)
            log.error("task %s callback failed for good: %s", record.task_id, message)
        return False

    async def _post(self, record: TaskRecord, outcome: Outcome) -> tuple[bool, str] | None:
        """POST the callback; None on success, else (retryable, error message)."""
        headers = {"content-type": "application/json", "idempotency-key": record.task_id}
        try:
            response = await self.http.post(
                record.callback_url, content=callback_body(record, outcome), headers=headers
            )
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return None
        code = response.status_code
        return (code >= 500 or code in (408, 425, 429)), f"receiver answered HTTP {code}"


async def deliver_callback(ctx: dict[str, Any], queue: str, task_id: str, attempt: int) -> None:
    """arq job: a deferred retry of a callback delivery."""
    sender: CallbackSender = ctx["runtime"].callbacks
    record = await sender.broker.load(queue, task_id)
    if record is None or record.outcome is None:
        log.warning("task %s gone before callback attempt %d", task_id, attempt)
        return
    await sender.deliver(record, record.outcome, attempt)
