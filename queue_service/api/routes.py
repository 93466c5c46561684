"""The `/v1/queue` HTTP handlers."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.api import waiting
from queue_service.endpoints import FILE_ENDPOINTS
from queue_service.errors import BadRequest, Conflict, Forbidden, TaskNotFound
from queue_service.models import QUEUE_NAME_PATTERN, TERMINAL_STATUSES, PutRequest, ResponseMode

from .body import parse_model, read_json_bytes
from .job_files import MOST_FILES, attach, is_multipart, store_form
from .responses import ok
from .state import AppState
from .uploads import check_length


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.queue
    return state


async def put(request: Request) -> Response:
    state = _state(request)
    principal = await state.admit(request)
    tenant = principal.tenant
    if is_multipart(request):  # the put's JSON in a `job` field, the job's files as parts
        check_length(request, state.settings.max_file_bytes)
        async with request.form(max_files=MOST_FILES, max_fields=64) as form:
            text = form.get("job")
            if not isinstance(text, str):
                raise BadRequest("a multipart put needs a 'job' field holding the put's JSON")
            job = parse_model(PutRequest, text.encode(), state.put_context)
            principal.check_queue(job.queue)
            timeout = job.timeout or state.default_timeout(job.response_mode)
            ttl = timeout + state.settings.result_retention
            parts = await store_form(state, tenant, job.endpoint, form, ttl, skip="job")
        job = job.model_copy(update={"data": {**job.data, **parts}})
    else:
        body = await read_json_bytes(request, state.settings.max_body_bytes)
        job = parse_model(PutRequest, body, state.put_context)
        principal.check_queue(job.queue)
    timeout = job.timeout or state.default_timeout(job.response_mode)
    if job.endpoint in FILE_ENDPOINTS:
        job = await attach(state, tenant, job, timeout + state.settings.result_retention)
    if job.callback_url is not None:
        await state.callback_policy.allows(job.callback_url)
    args = (job, tenant, timeout, state.sealed_key(request), _idempotency_key(request))
    if job.response_mode is ResponseMode.CALLBACK:
        return ok(await state.store.tasks.enqueue(*args))
    return await waiting.wait_for(state, request, *args)


IDEMPOTENCY_KEY_HEADER = "idempotency-key"


def _idempotency_key(request: Request) -> str | None:
    """The client's `Idempotency-Key` (1-255 visible ASCII characters), if it sent one."""
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= 255 or not all("!" <= char <= "~" for char in key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


async def get_task(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    task_id = request.path_params["task_id"]
    record = await state.store.tasks.get(task_id, tenant)
    if record is None:
        raise TaskNotFound(f"task {task_id} not found")
    return ok(record.public_view())


async def cancel_task(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    task_id = request.path_params["task_id"]
    result = await state.store.tasks.cancel(task_id, tenant)
    if result is None:
        raise TaskNotFound(f"task {task_id} not found")
    if result.previous in TERMINAL_STATUSES:
        raise Conflict(f"task {task_id} already finished: {result.previous.value}")
    return ok(result.record.public_view())


async def _visible_queue(state: AppState, request: Request) -> str:
    """The path's queue, if this key may see it: admins all, keys limited to some queues
    those, others the queues they use. Any other answers 404, exactly as a missing queue does
    (no way to learn which queues exist)."""
    principal = await state.admit(request)
    queue: str = request.path_params["queue"]
    missing = TaskNotFound(f"queue {queue} not found")
    if not re.fullmatch(QUEUE_NAME_PATTERN, queue):
        raise missing
    if principal.queues is not None and queue not in principal.queues and not principal.admin:
        raise missing
    if not await state.store.queues.exists(queue):
        raise missing
    if principal.admin or principal.queues is not None:
        return queue
    if not await state.store.queues.used_by(queue, principal.tenant):
        raise missing
    return queue


async def queue_stats(request: Request) -> Response:
    state = _state(request)
    queue = await _visible_queue(state, request)
    return ok(await state.store.statistics.queue(queue))


async def pause_queue(request: Request) -> Response:
    return await _set_paused(request, paused=True)


async def resume_queue(request: Request) -> Response:
    return await _set_paused(request, paused=False)


async def _set_paused(request: Request, paused: bool) -> Response:
    state = _state(request)
    if not (await state.admit(request)).admin:
        raise Forbidden("pausing and resuming queues takes an admin key")
    queue = await _visible_queue(state, request)
    await state.store.queues.set_paused(queue, paused)
    return ok({"queue": queue, "paused": paused})


ROUTES = [
    Route("/v1/queue/put", put, methods=["POST"]),
    Route("/v1/queue/{task_id}", get_task, methods=["GET"]),
    Route("/v1/queue/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/v1/queue/{queue}/stats", queue_stats, methods=["GET"]),
    Route("/v1/queue/{queue}/pause", pause_queue, methods=["POST"]),
    Route("/v1/queue/{queue}/resume", resume_queue, methods=["POST"]),
]
