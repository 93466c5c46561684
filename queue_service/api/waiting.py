"""Blocking and streaming puts: the request waits on the hub for its task's events.

The request subscribes to its task's channel before the task is enqueued. Past the timeout
(408) or when the client goes away, the job is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from queue_service.api.responses import error
from queue_service.api.state import AppState
from queue_service.errors import RequestTimeout
from queue_service.models import PutRequest, Status
from queue_service.store.events import Chunk, Done, Head, TaskEvent
from queue_service.store.hub import HubDisconnected
from queue_service.store.ids import TaskId

T = TypeVar("T")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ClientGone(Exception):
    """The client closed its connection while waiting."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def wait_or_leave(request: Request, waiting: Coroutine[Any, Any, T], seconds: float) -> T:
    """`waiting`'s result, unless the client disconnects (ClientGone) or time runs out (408)."""
    waiter = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {waiter, gone}, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    if gone in done:
        raise ClientGone
    raise RequestTimeout("the job did not finish within its timeout; it was cancelled")


TASK_ID_HEADER = "x-task-id"


def _response(done: Done, task_id: str) -> Response:
    return Response(
        done.body,
        status_code=done.status_code,
        media_type=done.content_type,
        headers={TASK_ID_HEADER: task_id},
    )


def _error_event(message: str, kind: str) -> bytes:
    data = orjson.dumps({"error": {"message": message, "type": kind}})
    return b"event: error\ndata: " + data + b"\n\n"


async def _abandon(state: AppState, task_id: str, tenant: str, reason: str) -> None:
    """Cancel a job nobody waits for any more (shielded: called while being cancelled)."""
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await state.broker.cancel(task_id, tenant, reason)


async def blocking(
    state: AppState,
    request: Request,
    job: PutRequest,
    task_id: TaskId,
    tenant: str,
    timeout_s: int,
    sealed_key: bytes | None,
) -> Response:
    text_id = str(task_id)
    deadline = time.monotonic() + timeout_s
    async with state.hub.subscribe(state.broker.keys.task_channel(job.queue, text_id)) as events:
        await state.broker.put(task_id, job, tenant, timeout_s, sealed_key)
        try:
            while True:
                event = await wait_or_leave(request, events.next(), deadline - time.monotonic())
                if isinstance(event, Done):
                    return _response(event, text_id)
        except ClientGone:
            await _abandon(state, text_id, tenant, "the client disconnected")
            return Response(status_code=499)
        except RequestTimeout as exc:
            await _abandon(state, text_id, tenant, "timed out waiting for the result")
            return error(exc.status_code, exc.message, headers={TASK_ID_HEADER: text_id})


class RelayResponse(StreamingResponse):
    """A StreamingResponse that runs a clean-up however the response ends."""

    def __init__(
        self, events: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]], task_id: str
    ) -> None:
        headers = {**SSE_HEADERS, TASK_ID_HEADER: task_id}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


async def streaming(
    state: AppState,
    request: Request,
    job: PutRequest,
    task_id: TaskId,
    tenant: str,
    timeout_s: int,
    sealed_key: bytes | None,
) -> Response:
    text_id = str(task_id)
    deadline = time.monotonic() + timeout_s
    subscribing = state.hub.subscribe(state.broker.keys.task_channel(job.queue, text_id))
    events = await subscribing.__aenter__()
    finished = False

    async def close() -> None:
        if not finished:
            await _abandon(state, text_id, tenant, "the client disconnected")
        await subscribing.__aexit__(None, None, None)

    try:
        await state.broker.put(task_id, job, tenant, timeout_s, sealed_key)
        first = await wait_or_leave(request, events.next(), deadline - time.monotonic())
    except BaseException as exc:  # no stream to relay: clean up here, not in close()
        await _abandon(state, text_id, tenant, _reason(exc))
        await subscribing.__aexit__(None, None, None)
        if isinstance(exc, ClientGone):
            return Response(status_code=499)
        if isinstance(exc, RequestTimeout):
            return error(exc.status_code, exc.message, headers={TASK_ID_HEADER: text_id})
        raise
    if isinstance(first, Done):  # refused before the first event: a plain response
        finished = True
        await subscribing.__aexit__(None, None, None)
        return _response(first, text_id)

    async def relay() -> AsyncIterator[bytes]:
        nonlocal finished
        event: TaskEvent = first
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                while True:
                    if isinstance(event, Chunk):
                        yield event.raw
                    elif isinstance(event, Done):
                        finished = True
                        if event.status is not Status.SUCCEEDED:
                            yield _error_event(_message(event), event.status.value)
                        return
                    event = await events.next()
        except TimeoutError:
            await _abandon(state, text_id, tenant, "timed out while streaming")
            finished = True
            yield _error_event("the job did not finish within its timeout", "timeout")
        except HubDisconnected as exc:
            finished = True
            yield _error_event(exc.message, "unavailable")

    assert isinstance(first, Head)
    return RelayResponse(relay(), close, text_id)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientGone):
        return "the client disconnected"
    if isinstance(exc, RequestTimeout):
        return "timed out waiting for the first event"
    return f"the request failed: {type(exc).__name__}"


def _message(done: Done) -> str:
    try:
        error = orjson.loads(done.body)["error"]
        return str(error.get("message", error) if isinstance(error, dict) else error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"the job ended {done.status.value} (status code {done.status_code})"
