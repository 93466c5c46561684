"""Putting a batch's lines (in the background of the API process that created the batch,
or of whichever process reads it after that one died) and moving a batch to its final
state when it is read. See `batches.py` for the lifecycle."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson

from queue_service.errors import QueueFull, QueueServiceError
from queue_service.models import PutContext, PutRequest, ResponseMode
from queue_service.store import Store
from queue_service.store.batches import FINAL, Batch, Line
from queue_service.timing import now_ms

from .body import validate_object

log = logging.getLogger("queue_service.api.batch_runner")

MAX_LINES = 50_000
WINDOWS = {"24h": 24 * 3600}
SUBMITTER_TTL_MS = 15_000
GROUP = 500
"""Lines put (and recorded) per step of the background submission."""
OPEN = ("validating", "in_progress")


async def file_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(line number from 1, line) of a file read in pieces; blank lines skipped."""
    number, rest = 0, b""
    async for piece in pieces:
        *complete, rest = (rest + piece).split(b"\n")
        for line in complete:
            number += 1
            if line.strip():
                yield number, line
    if rest.strip():
        yield number + 1, rest


class BatchRunner:
    """Puts the lines of the batches this process created (or took over), and moves batches
    to their final state when they are read."""

    def __init__(self, store: Store, put_context: PutContext) -> None:
        self.store = store
        self.put_context = put_context
        self._token = secrets.token_hex(8)
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self, batch: Batch) -> None:
        if batch.id not in self._running:
            task = asyncio.create_task(self._submit(batch), name=f"batch {batch.id}")
            self._running[batch.id] = task
            task.add_done_callback(lambda _: self._running.pop(batch.id, None))

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def refresh(self, batch: Batch) -> Batch:
        """Take over a submission whose process died; end a batch that should end (see
        `Batches.settle`: every move is atomic, racing processes never undo each other)."""
        batches = self.store.batches
        if batch.status in FINAL:
            return batch
        putting = batch.status == "validating" or (
            batch.status == "in_progress" and await batches.line_count(batch.id) < batch.total
        )
        if putting and now_ms() // 1000 < batch.expires_at:
            if batch.id not in self._running and await batches.hold_submission(
                batch.id, self._token, SUBMITTER_TTL_MS
            ):
                self.start(batch)
            return batch
        await batches.settle(batch)
        return batch

    async def cancel(self, batch: Batch, reason: str) -> Batch:
        """Cancel an open batch: its unfinished lines stop with `reason`, and it ends
        (`cancelled`) once none is left running. A batch no longer open is left as it is."""
        batches = self.store.batches
        if await batches.move(batch, "cancelling", OPEN, cancelling_at=now_ms() // 1000):
            await batches.stop_unfinished(batch, reason, expire=False)
        return await self.refresh(batch)

    async def _submit(self, batch: Batch) -> None:
        try:
            await self._validate_and_put(batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lines left are put by whoever reads the batch next
            log.exception("batch %s: putting its lines stopped", batch.id)

    async def _validate_and_put(self, batch: Batch) -> None:
        batches = self.store.batches
        if not await batches.hold_submission(batch.id, self._token, SUBMITTER_TTL_MS):
            return
        if batch.status == "validating":
            errors, total = await self._validate(batch)
            now = now_ms() // 1000
            if errors:
                found = orjson.dumps(errors).decode()
                await batches.move(batch, "failed", ["validating"], errors=found, failed_at=now)
                return
            moved = await batches.move(
                batch, "in_progress", ["validating"], total=total, in_progress_at=now
            )
            if not moved:  # cancelled meanwhile
                return
        done = await batches.line_count(batch.id)
        group: list[Line] = []
        async for number, line in self._lines(batch):
            if number <= done:
                continue
            group.append(await self._put(batch, line))
            if len(group) >= GROUP:
                await batches.add_lines(batch.id, group)
                group = []
                await batches.hold_submission(batch.id, self._token, SUBMITTER_TTL_MS)
                if await batches.status(batch.id) != "in_progress":  # cancelled: stop here
                    return
        await batches.add_lines(batch.id, group)

    async def _lines(self, batch: Batch) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """The batch's request lines, numbered 1, 2, ... (as checked by `_validate`)."""
        number = 0
        pieces = self.store.files.pieces(batch.input_file_id)
        async for _, text in file_lines(pieces):
            number += 1
            yield number, orjson.loads(text)

    async def _validate(self, batch: Batch) -> tuple[list[dict[str, Any]], int]:
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        count = 0
        async for line_number, text in file_lines(self.store.files.pieces(batch.input_file_id)):
            count += 1
            problem = self._problem(batch, text, seen)
            if problem is not None:
                code, message = problem
                errors.append(
                    {"code": code, "message": message, "param": None, "line": line_number}
                )
        if count > MAX_LINES:
            message = f"the file has {count} requests; a batch takes at most {MAX_LINES}"
            errors.append({"code": "too_many_requests", "message": message, "line": None})
        if count == 0:
            errors.append({"code": "empty_file", "message": "the file has no requests"})
        return errors[:1000], count

    def _problem(self, batch: Batch, text: bytes, seen: set[str]) -> tuple[str, str] | None:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return "invalid_json_line", f"this line is not valid JSON: {exc}"
        if not isinstance(value, dict) or not isinstance(value.get("body"), dict):
            return "invalid_request", "a line must be an object with an object 'body'"
        custom_id = value.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            return "missing_custom_id", "custom_id must be a non-empty string"
        if custom_id in seen:
            return "duplicate_custom_id", f"custom_id {custom_id!r} appears more than once"
        seen.add(custom_id)
        if value.get("method", "POST") != "POST":
            return "invalid_method", "method must be POST"
        if value.get("url") != batch.endpoint:
            return "mismatched_url", f"url must be the batch's endpoint {batch.endpoint}"
        try:
            self._job(batch, value)
        except QueueServiceError as exc:
            return "invalid_request", exc.message
        return None

    def _job(self, batch: Batch, value: dict[str, Any]) -> PutRequest:
        envelope = {
            "queue": batch.queue,
            "endpoint": batch.endpoint,
            "level": 1,
            "data": value["body"],
            "response_mode": ResponseMode.CALLBACK,
            "timeout": WINDOWS[batch.completion_window],  # the same on every try: idempotent
        }
        context = self.put_context.model_copy(
            update={"callback_required": False, "max_timeout": WINDOWS["24h"]}
        )
        return validate_object(PutRequest, envelope, context)

    async def _put(self, batch: Batch, value: dict[str, Any]) -> Line:
        """Put one line (waiting out a full queue); a line put before under the same
        idempotency key (a process died before recording it) answers its first task."""
        job = self._job(batch, value)
        timeout = job.timeout or WINDOWS["24h"]
        key = f"{batch.id}:{value['custom_id']}"
        while True:
            try:
                task_id = await self.store.tasks.enqueue(job, batch.tenant, timeout, None, key)
                return Line(value["custom_id"], task_id)
            except QueueFull as exc:
                await asyncio.sleep(exc.retry_after)
                await self.store.batches.hold_submission(batch.id, self._token, SUBMITTER_TTL_MS)
