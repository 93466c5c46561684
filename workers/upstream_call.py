"""Calling an upstream for one job: attempts, retries with backoff, streamed relays.

A failed attempt is retried (within `RetryPolicy` and the job's deadline) on a 429 or 5xx, a
timeout or a transport error, unless a streamed job's client has events already. A task-API
submit (Midjourney, Suno: `TASK_API_ENDPOINTS`) is retried only when the upstream surely
started no task, since a second submit would start (and bill) a second one: when the request
never reached it (`NOT_SENT`: the connection could not be made, or no pooled connection came
free) or it refused for now (HTTP 429, Midjourney's code 23 "queue full", or code 9 "system
error", which the submit adapter maps to 429 and 503: `TaskSubmitAdapter.not_submitted`).
A timeout, a broken connection or another 5xx may leave a task upstream: the job fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from queue_service.models import Status
from queue_service.store import Outcome, TaskRecord
from queue_service.store.events import encode_chunk, encode_head
from queue_service.store.tasks import Tasks
from queue_service.timing import backoff

from .adapters import Adapter
from .adapters.http import AnswerTooLarge, read_body
from .adapters.task_apis import TaskSubmitAdapter
from .budget_gate import Admission, BudgetGate
from .retry import parse_retry_after, retryable_status
from .routing import UpstreamRoute
from .sse import EventTooLarge, sse_events
from .upstream_priority import TierChoice, with_priority

log = logging.getLogger("workers.upstream_call")

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors of a request that never reached the upstream."""


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    retryable: bool
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    base: float
    cap: float


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """How much of an upstream's answer a job may take: beyond, it fails clearly."""

    max_events: int
    max_stream_bytes: int
    max_result_bytes: int


class UpstreamCaller:
    def __init__(
        self,
        http: httpx.AsyncClient,
        tasks: Tasks,
        policy: RetryPolicy,
        limits: SizeLimits,
        gate: BudgetGate,
    ) -> None:
        self.http = http
        self.tasks = tasks
        self.policy = policy
        self.limits = limits
        self.gate = gate

    async def call(
        self,
        record: TaskRecord,
        adapter: Adapter,
        route: UpstreamRoute,
        data: dict[str, Any],
        relay: bool,
        admission: Admission | None = None,
    ) -> Outcome:
        """The job's outcome after up to `max_retries` retries, never past its deadline.
        Every request first takes its budget (`admission`: what the first one took already).

        A streamed job is not retried once an event has been relayed to its client.
        """
        retries = 0
        data = with_priority(route.hints, record, data)
        tier = TierChoice(route.hints, record, data)
        while True:
            attempt = await self._attempt_on_tier(
                record, adapter, route, data, relay, tier, admission
            )
            admission = None
            outcome = attempt.outcome
            paused = await self.gate.pushed_back(route, outcome.status_code, attempt.retry_after)
            if not attempt.retryable or retries >= self.policy.max_retries:
                return outcome
            retries += 1
            delay = attempt.retry_after
            if delay is None:
                delay = backoff(retries, self.policy.base, self.policy.cap)
            if time.time() + delay >= record.deadline / 1000:
                return outcome
            if paused:  # the route's cooldown holds the next attempt (and every worker's)
                delay = 0.0
            log.info(
                "task %s: upstream answered %d; retry %d in %.2fs",
                record.task_id,
                attempt.outcome.status_code,
                retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt_on_tier(
        self,
        record: TaskRecord,
        adapter: Adapter,
        route: UpstreamRoute,
        data: dict[str, Any],
        relay: bool,
        tier: TierChoice,
        admission: Admission | None,
    ) -> Attempt:
        """An attempt on the job's service tier while it holds; refused, or cut off as the
        deadline nears, the same attempt again at once on the default tier (it was not the
        request's fault, so it spends no retry). Each request takes its budget first and
        settles it with the answer."""
        while True:
            taken = admission or await self.gate.admit(record, route, data)
            admission = None
            taken.sent = True
            body, tier_time = tier.request(data)
            try:
                async with asyncio.timeout(tier_time) as cut:
                    attempt = await self._attempt(record, adapter, route, body, relay)
            except TimeoutError:
                if not cut.expired():
                    raise  # the job's own deadline
                tier.fall_back("still unanswered as the job's deadline nears")
                continue
            await self.gate.settle(taken, attempt.outcome)
            if not tier.refused(attempt.outcome):
                return attempt

    async def _attempt(
        self,
        record: TaskRecord,
        adapter: Adapter,
        route: UpstreamRoute,
        data: dict[str, Any],
        relay: bool,
    ) -> Attempt:
        progress = _Progress()
        try:
            async with asyncio.timeout(route.timeout) as limit:
                if data.get("stream") is True:
                    return await self._stream(record, adapter, route, data, relay, progress)
                limit_bytes = self.limits.max_result_bytes
                reply = await adapter.call(self.http, route.upstream, data, limit_bytes)
        except AnswerTooLarge as exc:
            return Attempt(self._too_large(exc.size), retryable=False)
        except TimeoutError:
            if not limit.expired():
                raise  # the job's own deadline: not ours to handle
            message = f"upstream did not answer within {route.timeout}s"
            retryable = not progress.relayed and not isinstance(adapter, TaskSubmitAdapter)
            return Attempt(_failure(504, message), retryable)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            retryable = not progress.relayed
            if isinstance(adapter, TaskSubmitAdapter):
                retryable = isinstance(exc, NOT_SENT)
            return Attempt(_failure(502, f"upstream request failed: {detail}"), retryable)
        code = reply.status_code
        outcome = Outcome(_status_of(code), code, reply.body, reply.content_type)
        if isinstance(adapter, TaskSubmitAdapter):
            return Attempt(outcome, adapter.not_submitted(reply), reply.retry_after)
        return Attempt(outcome, retryable_status(code), reply.retry_after)

    def _too_large(self, size: int) -> Outcome:
        """The job's end when the answer passed the limit (`size`: where reading stopped)."""
        limit = self.limits.max_result_bytes
        message = f"upstream answer of {size} bytes is over the limit ({limit} bytes)"
        return Outcome.error(Status.FAILED, 502, message, "upstream_too_large")

    async def _stream(
        self,
        record: TaskRecord,
        adapter: Adapter,
        route: UpstreamRoute,
        data: dict[str, Any],
        relay: bool,
        progress: _Progress,
    ) -> Attempt:
        """Read a streamed answer; relay each event when the client streams; assemble it."""
        async with adapter.stream(self.http, route.upstream, data) as response:
            code = response.status_code
            content_type = response.headers.get("content-type", "application/json")
            if code >= 400 or not content_type.startswith("text/event-stream"):
                try:
                    body = await read_body(response, self.limits.max_result_bytes)
                except AnswerTooLarge as exc:
                    return Attempt(self._too_large(exc.size), retryable=False)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                outcome = Outcome(_status_of(code), code, body, content_type)
                return Attempt(outcome, retryable_status(code), retry_after)
            if relay:
                await self.tasks.publish(
                    record.queue, record.task_id, encode_head(code, content_type)
                )
            assembler = adapter.assembler()
            events = size = 0
            over = (
                f"upstream stream went past {self.limits.max_events} events or "
                f"{self.limits.max_stream_bytes} bytes"
            )
            too_long = Outcome.error(Status.FAILED, 502, over, "upstream_too_large")
            try:
                async for event in sse_events(response.aiter_bytes(), self.limits.max_stream_bytes):
                    events += 1
                    size += len(event.raw)
                    if events > self.limits.max_events or size > self.limits.max_stream_bytes:
                        return Attempt(too_long, retryable=False)
                    if relay:
                        chunk = encode_chunk(event.raw)
                        await self.tasks.publish(record.queue, record.task_id, chunk)
                        progress.relayed = True
                    assembler.feed(event)
            except EventTooLarge:
                return Attempt(too_long, retryable=False)
        error = assembler.error()
        if error is not None:
            detail = error.get("message") if isinstance(error, dict) else error
            failure = _failure(502, f"upstream stream error: {detail}")
            return Attempt(failure, not progress.relayed)
        result = assembler.result()
        if len(result) > self.limits.max_result_bytes:
            return Attempt(self._too_large(len(result)), retryable=False)
        return Attempt(Outcome(Status.SUCCEEDED, code, result), retryable=False)


@dataclass(slots=True)
class _Progress:
    relayed: bool = False


def _status_of(status_code: int) -> Status:
    return Status.SUCCEEDED if 200 <= status_code < 300 else Status.FAILED


def _failure(status_code: int, message: str) -> Outcome:
    return Outcome.error(Status.FAILED, status_code, message, "upstream_error")
