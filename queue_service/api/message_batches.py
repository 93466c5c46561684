"""Anthropic's Message Batches over the queue: `client.messages.batches` of the official SDK
(create with inline requests, retrieve, list, cancel, results as JSONL).

The requests become a batch file of the tenant's and run exactly as an OpenAI batch does
(see batches.py): each a level-1 job of `/v1/messages`; the views and results speak
Anthropic's shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from queue_service.errors import BadRequest, TaskNotFound
from queue_service.models import Status
from queue_service.store.batches import FINAL, Batch
from queue_service.timing import now_ms

from .batch_runner import MAX_LINES, WINDOWS
from .batches import admit_batch
from .body import parse_model, read_json_bytes
from .dialects import Dialect, speak
from .pages import listed, page_of
from .responses import OrjsonResponse
from .state import AppState

ENDPOINT = "/v1/messages"
ENDS = ("completed_at", "cancelled_at", "expired_at", "failed_at")
MAX_REQUESTS = MAX_LINES


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    custom_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    params: dict[str, Any]


class CreateMessageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: list[BatchRequest] = Field(min_length=1, max_length=MAX_REQUESTS)


def _state(request: Request) -> AppState:
    speak(request, Dialect.ANTHROPIC)
    state: AppState = request.app.state.queue
    return state


async def _lines(ask: CreateMessageBatch) -> AsyncIterator[bytes]:
    for item in ask.requests:
        line = {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT}
        yield orjson.dumps(line | {"body": item.params}) + b"\n"


async def create(request: Request) -> Response:
    state = _state(request)
    principal, webhook = await admit_batch(state, request)
    body = await read_json_bytes(request, state.settings.max_body_bytes)
    ask = parse_model(CreateMessageBatch, body)
    ids = [item.custom_id for item in ask.requests]
    if len(set(ids)) != len(ids):
        raise BadRequest("every request's custom_id must be unique within the batch")
    queue = principal.default_queue or state.settings.default_queue
    principal.check_queue(queue)
    upload = await state.store.files.create(
        principal.tenant, "message-batch.jsonl", "batch", _lines(ask), state.settings.max_file_bytes
    )
    created = now_ms() // 1000
    batch = Batch(
        id=state.store.batches.new_id("anthropic"),
        tenant=principal.tenant,
        endpoint=ENDPOINT,
        input_file_id=upload.id,
        completion_window="24h",
        queue=queue,
        status="validating",
        created_at=created,
        expires_at=created + WINDOWS["24h"],
        kind="anthropic",
        webhook_url=webhook,
    )
    await state.store.batches.create(batch)
    state.batch_runner.start(batch)
    return OrjsonResponse(await view(state, request, batch))


async def _found(request: Request) -> tuple[AppState, Batch]:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    batch = await state.store.batches.load(request.path_params["batch_id"], tenant)
    if batch is None or batch.kind != "anthropic":
        raise TaskNotFound(f"no such message batch: {request.path_params['batch_id']}")
    return state, await state.batch_runner.refresh(batch)


async def retrieve(request: Request) -> Response:
    state, batch = await _found(request)
    return OrjsonResponse(await view(state, request, batch))


async def cancel(request: Request) -> Response:
    state, batch = await _found(request)
    batch = await state.batch_runner.cancel(batch, "the batch was canceled")
    return OrjsonResponse(await view(state, request, batch))


async def listing(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    ids = [i for i in await state.store.batches.ids(tenant) if i.startswith("msgbatch_")]
    ids_of_page, more = page_of(request, ids, after="after_id", default=20, most=1000)
    page = []
    for batch_id in ids_of_page:
        batch = await state.store.batches.load(batch_id, tenant)
        if batch is not None:
            page.append(await view(state, request, await state.batch_runner.refresh(batch)))
    answer = listed(page, more)
    del answer["object"]  # Anthropic's lists have none
    return OrjsonResponse(answer)


async def results(request: Request) -> Response:
    state, batch = await _found(request)
    if batch.status not in FINAL:
        raise BadRequest(f"message batch {batch.id} has not ended yet")
    return StreamingResponse(_results(state, batch), media_type="application/binary")


async def _results(state: AppState, batch: Batch) -> AsyncIterator[bytes]:
    batches = state.store.batches
    async for lines in batches.lines(batch.id):
        rows = []
        for line, record in await batches.records(batch.queue, lines):
            if record is None:
                result: dict[str, Any] = {"type": "expired"}
            elif record.status is Status.SUCCEEDED and record.outcome is not None:
                result = {"type": "succeeded", "message": record.outcome.body_value()}
            elif record.status is Status.CANCELLED:
                result = {"type": "canceled"}
            elif record.status is Status.TIMEOUT:
                result = {"type": "expired"}
            else:
                body = record.outcome.body_value() if record.outcome else None
                error = body if isinstance(body, dict) and body.get("type") == "error" else None
                message = "the request failed"
                result = {
                    "type": "errored",
                    "error": error
                    or {"type": "error", "error": {"type": "api_error", "message": message}},
                }
            rows.append(orjson.dumps({"custom_id": line.custom_id, "result": result}) + b"\n")
        yield b"".join(rows)


def _time(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


async def view(state: AppState, request: Request, batch: Batch) -> dict[str, Any]:
    """The batch as Anthropic's API shows it."""
    statuses = await state.store.batches.tally(batch)
    unsubmitted = batch.total - statuses.total() if batch.total else len([])
    ended = batch.status in FINAL
    processing = (
        statuses[Status.QUEUED] + statuses[Status.RUNNING] + max(unsubmitted, 0) if not ended else 0
    )
    base = str(request.base_url).rstrip("/")
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": "ended"
        if ended
        else ("canceling" if batch.status == "cancelling" else "in_progress"),
        "request_counts": {
            "processing": 0 if ended else processing,
            "succeeded": statuses[Status.SUCCEEDED],
            "errored": statuses[Status.FAILED],
            "canceled": statuses[Status.CANCELLED],
            "expired": statuses[Status.TIMEOUT] + statuses[None],
        },
        "ended_at": _time(
            batch.times.get("completed_at")
            or batch.times.get("cancelled_at")
            or batch.times.get("expired_at")
            or batch.times.get("failed_at")
        ),
        "created_at": _time(batch.created_at),
        "expires_at": _time(batch.expires_at),
        "archived_at": None,
        "cancel_initiated_at": _time(batch.times.get("cancelling_at")),
        "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


ROUTES = [
    Route("/v1/messages/batches", create, methods=["POST"]),
    Route("/v1/messages/batches", listing, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}", retrieve, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}/cancel", cancel, methods=["POST"]),
    Route("/v1/messages/batches/{batch_id}/results", results, methods=["GET"]),
]
