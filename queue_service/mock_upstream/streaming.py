"""Sending replies with model-like latency while watching for the client going away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from starlette.types import Receive, Scope, Send

Producer = Callable[[Send], Awaitable[None]]
"""Sends one whole HTTP response through the ASGI `send`."""

_MAX_BATCH = 64
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class Frame(NamedTuple):
    """One SSE event, already encoded."""

    data: bytes
    token: bool = False
    """A model token: paced by the token latency."""


class BrokenStream(Exception):
    """Raised mid-body so that the server drops the connection without ending the body."""


class WatchedResponse:
    """ASGI response running a producer while watching for the client disconnecting.

    uvicorn silently ignores `send` after a disconnect, so the reliable signal is
    `http.disconnect` from `receive`; a `send` raising OSError (ASGI spec 2.4) or being
    cancelled from outside counts too. The response id then goes to `disconnects`.
    """

    __slots__ = ("_disconnects", "_producer", "_response_id")

    def __init__(self, producer: Producer, response_id: str, disconnects: list[str]) -> None:
        self._producer = producer
        self._response_id = response_id
        self._disconnects = disconnects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.ensure_future(self._producer(send))
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait((producer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not producer.done():  # the client went away, or the server cancelled us
                producer.cancel()
                self._disconnects.append(self._response_id)
        await asyncio.wait((producer,))
        if producer.cancelled():
            return
        try:
            producer.result()
        except OSError:
            self._disconnects.append(self._response_id)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def hang(send: Send) -> None:
    """Accept the request and never answer."""
    await asyncio.Event().wait()


def json_producer(body: bytes, delay: float, content_type: str = "application/json") -> Producer:
    """A whole body after `delay` (JSON unless `content_type` says otherwise)."""

    async def produce(send: Send) -> None:
        await asyncio.sleep(delay)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % len(body)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return produce


@dataclass(slots=True)
class EventStream:
    """A `text/event-stream` producer; `break_after`/`error_after` count events sent.

    Events due at the same moment go out in one write (up to `_MAX_BATCH`): a write per
    event is what limits throughput, and SSE clients cannot tell the difference.
    """

    frames: Iterator[Frame]
    ttft: float
    token_latency: float
    error_frame: bytes
    break_after: int | None = None
    error_after: int | None = None
    _batch: list[bytes] = field(default_factory=list, init=False, repr=False)

    async def __call__(self, send: Send) -> None:
        await asyncio.sleep(self.ttft)
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        first_token = True
        for sent, frame in enumerate(self.frames):
            if sent == self.break_after:
                await self._flush(send)
                raise BrokenStream
            if sent == self.error_after:
                break
            if frame.token:
                if not first_token and self.token_latency:
                    await self._flush(send)
                    await asyncio.sleep(self.token_latency)
                first_token = False
            self._batch.append(frame.data)
            if len(self._batch) >= _MAX_BATCH:
                await self._flush(send)
        else:  # the whole stream went out: break or fail at its end when asked
            if self.break_after is not None:
                await self._flush(send)
                raise BrokenStream
        if self.error_after is not None:
            self._batch.append(self.error_frame)
        await send({"type": "http.response.body", "body": b"".join(self._batch)})

    async def _flush(self, send: Send) -> None:
        if self._batch:
            body = b"".join(self._batch)
            self._batch.clear()
            await send({"type": "http.response.body", "body": body, "more_body": True})
