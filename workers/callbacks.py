"""Callback delivery: POST the outcome to `callback_url` at once, then retried through arq.

Retries back off exponentially with jitter until `max_attempts` or the retry horizon; then
the callback becomes a dead letter, kept for inspection and re-delivery
(`queue-service dead-letters --redeliver`). Every finished callback job sits on its queue's
callbacks-due set until its callback is settled; a cron sweep resends those that stay due
(their worker died between storing the result and delivering it).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from arq.connections import ArqRedis

from queue_service.errors import UnsafeDestination
from queue_service.models import CallbackState
from queue_service.outbound import CallbackPolicy
from queue_service.signing import signature_headers
from queue_service.store import Outcome, Store, TaskRecord
from queue_service.timing import backoff, now_ms

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
        store: Store,
        arq: ArqRedis,
        *,
        arq_queue: str,
        max_attempts: int,
        backoff: float,
        backoff_max: float,
        horizon: float,
        dead_letter_retention: int,
        policy: CallbackPolicy,
        secret: str | None,
    ) -> None:
        self.policy = policy
        self.secret = secret
        self.http = http
        self.store = store
        self.ledger = store.callbacks
        self.arq = arq
        self.arq_queue = arq_queue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.horizon = horizon
        self.dead_letter_retention = dead_letter_retention

    def delay(self, attempt: int) -> float:
        """How long to wait before attempt `attempt + 1`."""
        return backoff(attempt, self.backoff, self.backoff_max)

    async def deliver(self, record: TaskRecord, outcome: Outcome, attempt: int) -> bool:
        """One delivery attempt; schedules the next one when the receiver failed."""
        error = await self._post(record, outcome)
        if error is None:
            await self.ledger.record_attempt(record, CallbackState.DELIVERED, attempt, None)
            log.info("task %s callback delivered (attempt %d)", record.task_id, attempt)
            return True
        retryable, message = error
        delay = self.delay(attempt)
        finished_s = (record.finished_at or now_ms()) / 1000
        within_horizon = time.time() + delay - finished_s <= self.horizon
        if retryable and attempt < self.max_attempts and within_horizon:
            next_ms = int((time.time() + delay) * 1000)
            await self.ledger.record_attempt(
                record, CallbackState.RETRYING, attempt, message, next_ms
            )
            await self.schedule(record, attempt + 1, delay)
            log.warning(
                "task %s callback attempt %d failed (%s); retry in %.1fs",
                record.task_id,
                attempt,
                message,
                delay,
            )
        else:
            await self.ledger.record_attempt(record, CallbackState.FAILED, attempt, message)
            await self.ledger.dead_letters.add(record, self.dead_letter_retention)
            log.error("task %s callback given up (dead letter): %s", record.task_id, message)
        return False

    async def schedule(self, record: TaskRecord, attempt: int, delay: float) -> None:
        """Run delivery attempt `attempt` in `delay` seconds, on whichever worker is free."""
        await self.arq.enqueue_job(
            DELIVER_CALLBACK,
            record.queue,
            record.task_id,
            attempt,
            _job_id=self.store.keys.callback_job_id(record.task_id, attempt),
            _queue_name=self.arq_queue,
            _defer_by=delay,
        )

    async def _post(self, record: TaskRecord, outcome: Outcome) -> tuple[bool, str] | None:
        """POST the callback; None on success, else (retryable, error message).

        Whatever goes wrong is an attempt: retried, then a dead letter."""
        try:
            response = await self._send(record, outcome)
        except UnsafeDestination as exc:
            return False, str(exc)
        except Exception as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return None
        code = response.status_code
        return (code >= 500 or code in (408, 425, 429)), f"receiver answered HTTP {code}"

    async def _send(self, record: TaskRecord, outcome: Outcome) -> httpx.Response:
        body = callback_body(record, outcome)
        return await self.post(record.callback_url, body, {"idempotency-key": record.task_id})

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST signed JSON to a receiver; raises `UnsafeDestination` for a forbidden one.

        The URL is resolved again now and the connection goes to the address that was checked
        (with the URL's host as Host and SNI), so a DNS answer cannot change in between."""
        target = await self.policy.check(url, cached=False)
        headers = {**headers, "content-type": "application/json", "host": target.host}
        if self.secret:
            headers.update(signature_headers(self.secret, body))
        extensions = {"sni_hostname": urlsplit(url).hostname or ""}
        return await self.http.post(
            target.url, content=body, headers=headers, extensions=extensions
        )


def _sender(ctx: dict[str, Any]) -> CallbackSender:
    sender: CallbackSender = ctx["runtime"].callbacks
    return sender


async def deliver_callback(ctx: dict[str, Any], queue: str, task_id: str, attempt: int) -> None:
    """arq job: a deferred (re)delivery of a callback."""
    sender = _sender(ctx)
    record = await sender.store.tasks.load(queue, task_id)
    if record is None or record.outcome is None:
        log.warning("task %s gone before callback attempt %d", task_id, attempt)
        return
    if record.callback_status is CallbackState.DELIVERED:
        return
    await sender.deliver(record, record.outcome, attempt)


async def sweep_overdue_callbacks(ctx: dict[str, Any]) -> int:
    """arq cron: resend callbacks that stayed due (their worker died before settling them)."""
    sender = _sender(ctx)
    store, ledger = sender.store, sender.ledger
    resent = 0
    overdue = await ledger.due.overdue(sorted(await store.queues.all()))
    for queue, task_ids in overdue.items():
        for task_id in task_ids:
            record = await store.tasks.load(queue, task_id)
            if record is None or record.outcome is None:
                await ledger.due.settle(queue, task_id)
                continue
            attempt = record.callback_attempts + 1
            log.warning("task %s callback overdue: resending (attempt %d)", task_id, attempt)
            await ledger.record_attempt(
                record, CallbackState.RETRYING, record.callback_attempts, "overdue", now_ms()
            )
            await sender.schedule(record, attempt, 0)
            resent += 1
    return resent
