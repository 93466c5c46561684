"""A batch's output and error files, in OpenAI's line format, generated from its jobs'
task records when read (nothing is stored twice)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from queue_service.models import Status
from queue_service.store import Store
from queue_service.store.batches import Batch, Line
from queue_service.store.records import TaskRecord


def output_file_id(batch: Batch, kind: str) -> str:
    """The id of a batch's `output` or `errors` file."""
    return f"file-{batch.id}-{kind}"


def result_line(line: Line, record: TaskRecord | None) -> tuple[bool, bytes]:
    """(succeeded, the JSON line) of one request, in OpenAI's output file format."""
    if record is None:
        error = {"code": "result_expired", "message": "its result is no longer kept"}
        return False, _json_line(line, None, error)
    response = None
    if record.outcome is not None:
        response = {
            "status_code": record.outcome.status_code,
            "request_id": record.task_id,
            "body": record.outcome.body_value(),
        }
    if record.status is Status.SUCCEEDED:
        return True, _json_line(line, response, None)
    code = "batch_expired" if record.status is Status.TIMEOUT else record.status.value
    error = {"code": code, "message": f"the request ended {record.status.value}"}
    return False, _json_line(line, response, error)


def _json_line(line: Line, response: Any, error: Any) -> bytes:
    body = {"id": f"batch_req_{line.task_id}", "custom_id": line.custom_id}
    return orjson.dumps(body | {"response": response, "error": error}) + b"\n"


async def output_pieces(store: Store, batch: Batch, kind: str) -> AsyncIterator[bytes]:
    """The output (`kind` "output") or error file, generated from the task records."""
    want = kind == "output"
    async for lines in store.batches.lines(batch.id):
        piece = b"".join(
            text
            for succeeded, text in (
                result_line(line, record)
                for line, record in await store.batches.records(batch.queue, lines)
            )
            if succeeded is want
        )
        if piece:
            yield piece
