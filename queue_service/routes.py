"""The `/v1/queue` HTTP handlers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import waiting
from .body import parse_model, read_json_bytes
from .errors import BadRequest, Conflict, TaskNotFound
from .models import TERMINAL_STATUSES, PutRequest, ResponseMode
from .outbound import UnsafeDestination
from .responses import ok
from .state import AppState


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.queue
    return state


async def put(request: Request) -> Response:
    state = _state(request)
    principal = await state.admit(request)
    body = await read_json_bytes(request, state.settings.max_body_bytes)
    job = parse_model(PutRequest, body, state.put_context)
    principal.check_queue(job.queue)
    if job.callback_url is not None:
        try:
            await state.callback_policy.check(job.callback_url)
        except UnsafeDestination as exc:
            raise BadRequest(str(exc)) from None
    tenant = principal.tenant
    sealed = state.sealed_key(request)
    timeout = job.timeout or state.default_timeout(job.response_mode)
    queue_id = await state.broker.queue_id(job.queue)
    task_id = state.ids.make(queue_id, job.level, job.response_mode)
    if job.response_mode is ResponseMode.BLOCKING:
        return await waiting.blocking(state, request, job, task_id, tenant, timeout, sealed)
    if job.response_mode is ResponseMode.STREAMING:
        return await waiting.streaming(state, request, job, task_id, tenant, timeout, sealed)
    await state.broker.put(task_id, job, tenant, timeout, sealed)
    return ok(str(task_id))


async def get_task(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    task_id = request.path_params["task_id"]
    record = await state.broker.get(task_id, tenant)
    if record is None:
        raise TaskNotFound(f"task {task_id} not found")
    return ok(record.public_view())


async def cancel_task(request: Request) -> Response:
    state = _state(request)
    tenant = (await state.admit(request)).tenant
    task_id = request.path_params["task_id"]
    result = await state.broker.cancel(task_id, tenant)
    if result is None:
        raise TaskNotFound(f"task {task_id} not found")
    if result.previous in TERMINAL_STATUSES:
        raise Conflict(f"task {task_id} already finished: {result.previous.value}")
    return ok(result.record.public_view())


ROUTES = [
    Route("/v1/queue/put", put, methods=["POST"]),
    Route("/v1/queue/{task_id}", get_task, methods=["GET"]),
    Route("/v1/queue/{task_id}/cancel", cancel_task, methods=["POST"]),
]
