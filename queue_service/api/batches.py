"""OpenAI's Batch API over the queue: every line of the input file becomes a level-1 job of
the ordinary machinery (limits, retries, priority); the batch's progress, its completion and
its output and error files are read back from those jobs.

Lifecycle: `validating` (the file is checked as OpenAI checks it: JSON lines, `url` equal to
the batch's endpoint, unique custom_ids, at most 50,000 lines; any problem fails the batch
with `errors` naming the line) -> `in_progress` (the lines are put, in the background, each
with an idempotency key, so a process that dies midway is simply taken over) ->
`finalizing` -> `completed`; `cancelling` -> `cancelled`; past `completion_window`
unfinished lines end as `expired` (each with its error line) and so does the batch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.errors import BadRequest, TaskNotFound
from queue_service.store.batches import FINAL, Batch
from queue_service.timing import now_ms

from .auth import Principal
from .batch_files import output_file_id
from .batch_runner import WINDOWS
from .body import parse_model, read_json_bytes
from .dialects import Dialect, speak
from .pages import listed, page_of
from .responses import OrjsonResponse
from .state import AppState


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


def _state(request: Request) -> AppState:
    speak(request, Dialect.OPENAI)
    state: AppState = request.app.state.queue
    return state


async def admit_batch(state: AppState, request: Request) -> tuple[Principal, str]:
    """The caller of a batch create, and the (allowed) webhook URL its batch announces its
    end at, "" for none. Batches run with the service's own upstream key, so a service in
    passthrough mode has none."""
    principal = await state.admit(request)
    if state.credentials is not None:
        raise BadRequest(
            "batches run with the service's own upstream key, so they are not available with "
            "QUEUE_UPSTREAM_AUTH=passthrough"
        )
    webhook = principal.batch_webhook_url or state.settings.batch_webhook_url or ""
    if webhook:
        await state.callback_policy.allows(webhook)
    return principal, webhook


async def create(request: Request) -> Response:
    state = _state(request)
    principal, webhook = await admit_batch(state, request)
    ask = parse_model(CreateBatch, await read_json_bytes(request, 64 * 1024))
    if ask.endpoint not in state.put_context.endpoints:
        served = ", ".join(sorted(state.put_context.endpoints))
        raise BadRequest(f"endpoint {ask.endpoint!r} is not served; served: {served}")
    if ask.completion_window not in WINDOWS:
        raise BadRequest("completion_window must be '24h'")
    if await state.store.files.get(ask.input_file_id, principal.tenant) is None:
        raise BadRequest(f"input_file_id {ask.input_file_id!r} names no file of yours")
    queue = (ask.metadata or {}).get("queue") or principal.default_queue
    queue = queue or state.settings.default_queue
    principal.check_queue(queue)
    created = now_ms() // 1000
    batch = Batch(
        id=state.store.batches.new_id(),
        tenant=principal.tenant,
        endpoint=ask.endpoint,
        input_file_id=ask.input_file_id,
        completion_window=ask.completion_window,
        queue=queue,
        status="validating",
        created_at=created,
        expires_at=created + WINDOWS[ask.completion_window],
        metadata=ask.metadata,
        webhook_url=webhook,
    )
    await state.store.batches.create(batch)
    state.batch_runner.start(batch)
    return OrjsonResponse(await view(state, batch))


async def _found(request: Request) -> tuple[AppState, Batch]:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    batch = await state.store.batches.load(request.path_params["batch_id"], tenant)
    if batch is None:
        raise TaskNotFound(f"no such batch: {request.path_params['batch_id']}")
    return state, batch


async def retrieve(request: Request) -> Response:
    state, batch = await _found(request)
    return OrjsonResponse(await view(state, await state.batch_runner.refresh(batch)))


async def cancel(request: Request) -> Response:
    state, batch = await _found(request)
    batch = await state.batch_runner.cancel(batch, "the batch was cancelled")
    return OrjsonResponse(await view(state, batch))


async def listing(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    ids = [i for i in await state.store.batches.ids(tenant) if not i.startswith("msgbatch_")]
    ids_of_page, more = page_of(request, ids, after="after", default=20, most=100)
    page = []
    for batch_id in ids_of_page:
        batch = await state.store.batches.load(batch_id, tenant)
        if batch is not None:
            page.append(await view(state, await state.batch_runner.refresh(batch)))
    return OrjsonResponse(listed(page, more))


async def view(state: AppState, batch: Batch) -> dict[str, Any]:
    """The batch as OpenAI's API shows it."""
    total, completed, failed = await state.store.batches.counts(batch)
    output = error = None
    if batch.status in FINAL - {"failed"}:
        output = output_file_id(batch, "output") if completed else None
        error = output_file_id(batch, "errors") if failed else None
    times = {
        name: batch.times.get(name)
        for name in (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
        )
    }
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": output,
        "error_file_id": error,
        "created_at": batch.created_at,
        "expires_at": batch.expires_at,
        **times,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": batch.metadata,
    }


ROUTES = [
    Route("/v1/batches", create, methods=["POST"]),
    Route("/v1/batches", listing, methods=["GET"]),
    Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
]
