"""Blocking and streaming puts: the request waits on the hub for its task's events.

The request subscribes to its task's channel before the task is submitted, so it misses
no event. Past its timeout the job ends `timeout` (the answer is 408); when the client goes
away it ends `cancelled` (499).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from queue_service.errors import (
    ClientGone,
    Conflict,
    HubDisconnected,
    RequestTimeout,
    SlowReader,
    StaleSubmission,
)
from queue_service.models import PutRequest, ResponseMode, Status
from queue_service.store import Submission
from queue_service.store.events import Chunk, Done, Head, TaskEvent

from .state import AppState

T = TypeVar("T")

TASK_ID_HEADER = "x-task-id"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
LAST_WORD_S = 0.1
"""How long a slow reader's connection may take the closing error event."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def wait_or_leave(
    request: Request, waiting: Coroutine[Any, Any, T], seconds: float, task_id: str
) -> T:
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
        raise ClientGone("the client disconnected")
    raise RequestTimeout(
        "the job did not finish within its timeout; it was stopped",
        headers={TASK_ID_HEADER: task_id},
    )


async def _response(state: AppState, submission: Submission, done: Done) -> Response:
    task_id = submission.text_id
    body = done.body
    if done.stored:  # too large to publish: it waits on the task record
        body = await state.store.tasks.result(submission.job.queue, task_id)
    return Response(
        body,
        status_code=done.status_code,
        media_type=done.content_type,
        headers={TASK_ID_HEADER: task_id},
    )


def _error_event(message: str, kind: str) -> bytes:
    data = orjson.dumps({"error": {"message": message, "type": kind}})
    return b"event: error\ndata: " + data + b"\n\n"


async def _abandon(
    state: AppState, submission: Submission, reason: str, *, timed_out: bool = False
) -> None:
    """End a job nobody waits for any more: `timeout` when its timeout passed, else
    `cancelled` (shielded: called while being cancelled)."""
    tasks, text_id, tenant = state.store.tasks, submission.text_id, submission.tenant
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        if timed_out:
            await tasks.time_out(text_id, tenant, reason)
        else:
            await tasks.cancel(text_id, tenant, reason)


async def wait_for(
    state: AppState,
    request: Request,
    job: PutRequest,
    tenant: str,
    timeout_s: int,
    sealed_upstream_key: bytes | None = None,
    idempotency_key: str | None = None,
) -> Response:
    """Put a blocking or streaming job and answer with its result as it comes."""
    wait = blocking if job.response_mode is ResponseMode.BLOCKING else streaming
    args = (job, tenant, timeout_s, sealed_upstream_key, idempotency_key)
    try:
        return await wait(state, request, await state.store.tasks.prepare(*args))
    except StaleSubmission:  # its queue was registered anew: once more, with the new id
        return await wait(state, request, await state.store.tasks.prepare(*args))


async def _submit(state: AppState, submission: Submission) -> None:
    """Submit a job this request will wait for; a retried request (same Idempotency-Key)
    cannot wait on the first one's events, so it learns where to find that job instead."""
    stored = await state.store.tasks.submit(submission)
    if stored != submission.text_id:
        raise Conflict(
            f"this request was put before as task {stored}; GET /v1/queue/{stored} for it",
            headers={TASK_ID_HEADER: stored},
        )


async def blocking(state: AppState, request: Request, submission: Submission) -> Response:
    text_id = submission.text_id
    deadline = time.monotonic() + submission.timeout_s
    async with state.hub.subscribe(submission.channel) as events:
        await _submit(state, submission)
        try:
            while True:
                event = await wait_or_leave(
                    request, events.next(), deadline - time.monotonic(), text_id
                )
                if isinstance(event, Done):
                    return await _response(state, submission, event)
        except (ClientGone, RequestTimeout) as exc:
            timed_out = isinstance(exc, RequestTimeout)
            reason = _reason(exc, "waiting for the result")
            await _abandon(state, submission, reason, timed_out=timed_out)
            raise
        except HubDisconnected as exc:  # nobody will see its result: stop it, say which it was
            await _abandon(state, submission, "the results connection dropped")
            raise HubDisconnected(exc.message, headers={TASK_ID_HEADER: text_id}) from None


class RelayResponse(StreamingResponse):
    """A StreamingResponse that runs a clean-up however the response ends, and that is cut
    off when its client reads too slowly (`overflowed`): an error event if the connection
    still takes one, then the end of the response."""

    def __init__(
        self,
        events: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
        task_id: str,
        overflowed: asyncio.Event,
    ) -> None:
        headers = {**SSE_HEADERS, TASK_ID_HEADER: task_id}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._on_close = on_close
        self._overflowed = overflowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def cut_off_a_slow_reader() -> None:
                    await self._overflowed.wait()
                    group.cancel_scope.cancel()

                group.start_soon(cut_off_a_slow_reader)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()
            if self._overflowed.is_set():
                with anyio.move_on_after(LAST_WORD_S, shield=True):
                    body = _error_event("the client read the stream too slowly", "slow_reader")
                    await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


async def streaming(state: AppState, request: Request, submission: Submission) -> Response:
    text_id = submission.text_id
    deadline = time.monotonic() + submission.timeout_s
    subscription = AsyncExitStack()
    events = await subscription.enter_async_context(
        state.hub.subscribe(submission.channel, state.settings.stream_client_buffer_bytes)
    )
    finished = False

    async def close() -> None:
        if not finished:
            gone = "read too slowly" if events.overflowed.is_set() else "disconnected"
            await _abandon(state, submission, f"the client {gone}")
        await subscription.aclose()

    try:
        await _submit(state, submission)
        first = await wait_or_leave(request, events.next(), deadline - time.monotonic(), text_id)
    except BaseException as exc:  # no stream to relay: clean up here, not in close()
        timed_out = isinstance(exc, RequestTimeout)
        reason = _reason(exc, "waiting for the first event")
        await _abandon(state, submission, reason, timed_out=timed_out)
        await subscription.aclose()
        raise
    if isinstance(first, Done):  # refused before the first event: a plain response
        finished = True
        await subscription.aclose()
        return await _response(state, submission, first)

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
            await _abandon(state, submission, "timed out while streaming", timed_out=True)
            finished = True
            yield _error_event("the job did not finish within its timeout", "timeout")
        except HubDisconnected as exc:  # its client gets no more events: the job is cancelled
            yield _error_event(exc.message, "unavailable")
        except SlowReader:  # the cut-off in RelayResponse ends the response
            return

    assert isinstance(first, Head)
    return RelayResponse(relay(), close, text_id, events.overflowed)


def _reason(exc: BaseException, waiting_for: str) -> str:
    if isinstance(exc, ClientGone):
        return "the client disconnected"
    if isinstance(exc, RequestTimeout):
        return f"timed out {waiting_for}"
    return f"the request failed: {type(exc).__name__}"


def _message(done: Done) -> str:
    try:
        error = orjson.loads(done.body)["error"]
        return str(error.get("message", error) if isinstance(error, dict) else error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"the job ended {done.status.value} (status code {done.status_code})"
