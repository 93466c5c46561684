"""Running one job: claim it, call the upstream through its adapter, record the outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson

from queue_service.broker import Broker
from queue_service.events import encode_chunk, encode_head
from queue_service.models import TERMINAL_STATUSES, ResponseMode, Status
from queue_service.task import Outcome, TaskRecord

from .adapters import ADAPTERS, Adapter, Upstream
from .callbacks import CallbackSender
from .consumer import Entry
from .sse import sse_events

log = logging.getLogger("workers.executor")

WAITER_DEADLINE_GRACE = 2.0
"""A blocking or streaming job's deadline belongs to its waiting client, which cancels the job
when it passes; the worker's own cut comes this much later, as a backstop."""


class JobExecutor:
    def __init__(
        self,
        broker: Broker,
        http: httpx.AsyncClient,
        upstream: Upstream,
        callbacks: CallbackSender,
        worker_name: str,
    ) -> None:
        self.broker = broker
        self.http = http
        self.upstream = upstream
        self.callbacks = callbacks
        self.worker_name = worker_name
        self.cancelled: set[str] = set()

    async def run(self, entry: Entry) -> None:
        """Run one stream entry to its end; acknowledge it only once its outcome is stored."""
        record = await self.broker.start(entry.queue, entry.task_id, self.worker_name)
        if record is None or record.status in TERMINAL_STATUSES:
            await self.broker.ack(entry.queue, entry.level, entry.entry_id)
            return
        if record.status is Status.QUEUED:  # start.lua left it: the deadline has passed
            outcome = Outcome.error(Status.TIMEOUT, 408, "deadline passed before start", "timeout")
        else:
            log.info(
                "task %s running (queue %s, level %d)", entry.task_id, entry.queue, entry.level
            )
            try:
                outcome = await self._call_upstream(record)
            except asyncio.CancelledError:
                if entry.task_id not in self.cancelled:
                    raise  # shutting down: the entry stays pending for another worker
                self.cancelled.discard(entry.task_id)
                await self.broker.ack(entry.queue, entry.level, entry.entry_id)
                log.info("task %s cancelled while running", entry.task_id)
                return
        await self._finish(entry, record, outcome)

    async def _call_upstream(self, record: TaskRecord) -> Outcome:
        adapter = ADAPTERS.get(record.endpoint)
        if adapter is None:
            message = f"no adapter serves {record.endpoint}"
            return Outcome.error(Status.FAILED, 400, message, "invalid_request")
        data: dict[str, Any] = orjson.loads(record.data)
        relay = record.mode is ResponseMode.STREAMING
        if relay:
            data["stream"] = True
        remaining = record.deadline / 1000 - time.time()
        if record.mode is not ResponseMode.CALLBACK:
            remaining += WAITER_DEADLINE_GRACE
        try:
            async with asyncio.timeout(remaining):
                if data.get("stream") is True:
                    return await self._stream(record, adapter, data, relay)
                reply = await adapter.call(self.http, self.upstream, data)
        except TimeoutError:
            return Outcome.error(Status.TIMEOUT, 408, "job timed out", "timeout")
        except httpx.HTTPError as exc:
            message = f"upstream request failed: {type(exc).__name__}: {exc}"
            return Outcome.error(Status.FAILED, 502, message, "upstream_error")
        return Outcome(
            _status_of(reply.status_code), reply.status_code, reply.body, reply.content_type
        )

    async def _stream(
        self, record: TaskRecord, adapter: Adapter, data: dict[str, Any], relay: bool
    ) -> Outcome:
        """Read a streamed answer; relay each event when the client streams; assemble it."""
        async with adapter.stream(self.http, self.upstream, data) as response:
            content_type = response.headers.get("content-type", "application/json")
            if response.status_code >= 400 or not content_type.startswith("text/event-stream"):
                body = await response.aread()
                return Outcome(
                    _status_of(response.status_code), response.status_code, body, content_type
                )
            if relay:
                head = encode_head(response.status_code, content_type)
                await self.broker.publish(record.queue, record.task_id, head)
            assembler = adapter.assembler()
            async for event in sse_events(response.aiter_bytes()):
                if relay:
                    await self.broker.publish(record.queue, record.task_id, encode_chunk(event.raw))
                assembler.feed(event)
        error = assembler.error()
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else str(error)
            return Outcome.error(
                Status.FAILED, 502, f"upstream stream error: {message}", "upstream_error"
            )
        return Outcome(Status.SUCCEEDED, response.status_code, assembler.result())

    async def _finish(self, entry: Entry, record: TaskRecord, outcome: Outcome) -> None:
        won = await self.broker.finish(
            entry.queue,
            entry.level,
            entry.task_id,
            entry.entry_id,
            outcome,
            announce_body=record.mode is not ResponseMode.CALLBACK,
        )
        elapsed = (time.time() * 1000 - record.created_at) / 1000
        log.info(
            "task %s %s (status code %d) after %.3fs",
            entry.task_id,
            outcome.status.value,
            outcome.status_code,
            elapsed,
        )
        if won and record.mode is ResponseMode.CALLBACK:
            await self.callbacks.deliver(record, outcome, attempt=1)


def _status_of(status_code: int) -> Status:
    return Status.SUCCEEDED if 200 <= status_code < 300 else Status.FAILED
