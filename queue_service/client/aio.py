"""`AsyncQueueClient`: the service from asyncio code."""

# `timeout` parameters mirror the API's `timeout` field and QueueClient; not asyncio deadlines.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx

from .protocol import (
    DEFAULT_BASE_URL,
    TASK_ID_HEADER,
    BlockingResponse,
    Call,
    Deadline,
    blocking_result,
    build_request,
    cancel_call,
    client_options,
    envelope_data,
    get_call,
    is_event_stream,
    is_terminal,
    put_call,
    task_id_of,
    task_view,
    transport_errors,
)
from .sse import EventDecoder, StreamEvent


class AsyncQueueClient:
    """Put jobs, read and wait for tasks, cancel them; run blocking and streaming jobs.

    `timeout` is the HTTP timeout of ordinary requests; blocking and streaming requests wait
    as long as the job may run (the service answers 408 at the job's timeout).
    """

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None, timeout: float = 30
    ) -> None:
        self._http = httpx.AsyncClient(**client_options(base_url, api_key, timeout))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        with transport_errors():
            return await self._http.send(build_request(self._http, call))

    async def put(
        self,
        queue: str,
        endpoint: str,
        data: dict[str, Any],
        *,
        level: int = 1,
        callback_url: str | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue a job; its task id. With `idempotency_key`, sending the same put again
        (say after a lost answer) answers the first task's id and creates nothing."""
        call = put_call(
            queue,
            endpoint,
            data,
            level=level,
            mode="callback",
            callback_url=callback_url,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return task_id_of(envelope_data(await self._send(call)))

    async def get(self, task_id: str) -> dict[str, Any]:
        """The task's view: status, result, status_code, timestamps, callback."""
        return task_view(envelope_data(await self._send(get_call(task_id))))

    async def wait(
        self, task_id: str, *, poll: float = 0.5, timeout: float | None = None
    ) -> dict[str, Any]:
        """The task's view once it has finished (WaitTimeout past `timeout` seconds)."""
        deadline = Deadline(task_id, timeout)
        # polling: the API has no way to push a callback-mode task's end to a client
        while not is_terminal(view := await self.get(task_id)):  # noqa: ASYNC110
            await asyncio.sleep(deadline.next_sleep(poll))
        return view

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel the task; its view (Conflict if it had already finished)."""
        return task_view(envelope_data(await self._send(cancel_call(task_id))))

    async def blocking(
        self, queue: str, endpoint: str, data: dict[str, Any], *, timeout: int | None = None
    ) -> BlockingResponse:
        """Run an online job and answer with the upstream's response."""
        call = put_call(queue, endpoint, data, level=0, mode="blocking", timeout=timeout)
        return blocking_result(await self._send(call))

    async def stream(
        self, queue: str, endpoint: str, data: dict[str, Any], *, timeout: int | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Run an online job and yield the upstream's events as they come, up to `[DONE]`.

        To stop early, iterate inside `contextlib.aclosing(...)`: the connection closes at once and
        the service cancels the job.
        """
        call = put_call(queue, endpoint, data, level=0, mode="streaming", timeout=timeout)
        with transport_errors():
            response = await self._http.send(build_request(self._http, call), stream=True)
            try:
                if not is_event_stream(response):
                    await response.aread()
                    yield StreamEvent(None, blocking_result(response).body)
                    return
                decoder = EventDecoder(response.headers.get(TASK_ID_HEADER))
                async for line in response.aiter_lines():
                    if (event := decoder.feed(line)) is not None:
                        yield event
                    if decoder.done:
                        return
                if (event := decoder.flush()) is not None:
                    yield event
            finally:
                await response.aclose()
