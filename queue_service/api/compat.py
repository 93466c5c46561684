"""Drop-in model endpoints: the official OpenAI and Anthropic SDKs work through the queue by
changing `base_url` alone.

`POST /v1/chat/completions` (and the other served endpoints, Anthropic's `/v1/messages`
included) take the upstream's own request body and run it as an ordinary task: streaming
mode when the body says `"stream": true`, else blocking; the answer is the upstream's own,
with the task's id in `X-Task-Id`. The queue comes from the `X-Queue` header, else the key's
`default_queue`, else QUEUE_DEFAULT_QUEUE; `X-Queue-Timeout` sets the timeout. These calls
wait for their answer, so they run online: `X-Queue-Level: 1` is refused (offline work goes
through the put API's callback mode). Errors come in the SDK's own dialect.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.endpoints import FILE_ENDPOINTS, OPENAI_STYLE_ENDPOINTS, UNQUEUEABLE
from queue_service.errors import BadRequest
from queue_service.models import PutRequest, ResponseMode

from . import waiting
from .body import read_json_bytes, validate_object
from .dialects import Dialect, speak
from .job_files import MOST_FILES, attach, is_multipart, store_form
from .responses import OrjsonResponse
from .state import AppState
from .uploads import check_length

ANTHROPIC_ENDPOINTS = frozenset({"/v1/messages"})
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.queue
    return state


def _header_int(request: Request, name: str) -> int | None:
    text = request.headers.get(name)
    if text is None:
        return None
    if not WHOLE_NUMBER.fullmatch(text.strip()):
        raise BadRequest(f"header {name} must be a whole number (up to 9 digits), not {text!r}")
    return int(text)


async def model_call(request: Request) -> Response:
    endpoint = request.url.path
    speak(request, Dialect.ANTHROPIC if endpoint in ANTHROPIC_ENDPOINTS else Dialect.OPENAI)
    state = _state(request)
    principal = await state.admit(request)
    if _header_int(request, "x-queue-level") not in (None, 0):
        raise BadRequest(
            "X-Queue-Level must be 0 here: these calls wait for their answer, so they run "
            "online; put offline work through POST /v1/queue/put in callback mode"
        )
    queue = (
        request.headers.get("x-queue") or principal.default_queue or state.settings.default_queue
    )
    timeout_header = _header_int(request, "x-queue-timeout")
    if is_multipart(request) and endpoint in FILE_ENDPOINTS:  # as the SDKs send files
        check_length(request, state.settings.max_file_bytes)
        timeout = timeout_header or state.settings.blocking_timeout
        ttl = timeout + state.settings.result_retention
        async with request.form(max_files=MOST_FILES, max_fields=64) as form:
            data = await store_form(state, principal.tenant, endpoint, form, ttl)
        if data.get("stream") == "true":  # a form field is text: the JSON meaning is a bool
            data["stream"] = True
    else:
        data = _json_object(await read_json_bytes(request, state.settings.max_body_bytes))
    mode = ResponseMode.STREAMING if data.get("stream") is True else ResponseMode.BLOCKING
    envelope = {
        "queue": queue,
        "endpoint": endpoint,
        "level": 0,
        "data": data,
        "response_mode": mode,
        "timeout": timeout_header,
    }
    job = validate_object(PutRequest, envelope, state.put_context)
    principal.check_queue(job.queue)
    timeout = job.timeout or state.default_timeout(mode)
    if endpoint in FILE_ENDPOINTS:
        job = await attach(state, principal.tenant, job, timeout + state.settings.result_retention)
    return await waiting.wait_for(
        state, request, job, principal.tenant, timeout, state.sealed_key(request)
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


async def list_models(request: Request) -> Response:
    """The models the routing file names, else the default upstream's own list (OpenAI's
    list shape); an empty list while the upstream cannot be reached."""
    speak(request, Dialect.OPENAI)
    state = _state(request)
    await state.admit(request)
    return OrjsonResponse({"object": "list", "data": await state.models.listed()})


async def unqueueable(request: Request) -> Response:
    speak(request, Dialect.OPENAI)
    raise BadRequest(UNQUEUEABLE[request.url.path])


ROUTES = [
    *(Route(endpoint, model_call, methods=["POST"]) for endpoint in sorted(OPENAI_STYLE_ENDPOINTS)),
    *(Route(endpoint, unqueueable, methods=["GET", "POST"]) for endpoint in UNQUEUEABLE),
    Route("/v1/models", list_models, methods=["GET"]),
]
