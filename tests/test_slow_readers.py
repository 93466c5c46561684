"""A streaming client that stops reading (queue_service/api/waiting.py, store/hub.py): the API
keeps at most `stream_client_buffer_bytes` of its unread events, then cuts the response off
and cancels the job, and lets go of its subscription."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.helpers import eventually, put_body, view, wait_view
from tests.servers import serve

from .conftest import running_worker

BUFFER = 256 * 1024
CHUNK_TEXT = "x" * 8000
EVENTS = 6000
"""Some 50 MB of events: far more than the kernel's and the servers' buffers hold (and, were
the stream relayed whole, more than a job's result may hold)."""


@dataclass
class SseUpstream:
    """A chat completions upstream streaming `events` (from the request) big events."""

    finished: bool = False

    def app(self) -> Starlette:
        async def completions(request: Request) -> Response:
            count = int((await request.json()).get("events", EVENTS))
            return StreamingResponse(self._events(count), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

    async def _events(self, count: int) -> AsyncIterator[bytes]:
        for index in range(count):
            delta = {"content": CHUNK_TEXT} if index else {"role": "assistant"}
            chunk = {
                "id": "chatcmpl-big",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"
        self.finished = True


@pytest.fixture
async def upstream(settings: Settings) -> AsyncIterator[tuple[Settings, SseUpstream]]:
    """The big-event upstream, and the test settings pointing at it."""
    sse = SseUpstream()
    async with serve(sse.app()) as url:
        yield settings.model_copy(update={"upstream_url": url}), sse


@pytest.fixture
async def api_app(settings: Settings) -> AsyncIterator[tuple[str, Starlette]]:
    """The API (its URL and app object) with a small per-subscription buffer."""
    small = settings.model_copy(update={"stream_client_buffer_bytes": BUFFER})
    app = create_app(small)
    async with serve(app) as url:
        yield url, app


def streaming_put(**data: Any) -> dict[str, Any]:
    return put_body("streams", level=0, mode="streaming", **data)


@contextlib.asynccontextmanager
async def stalled_client(
    url: str, body: dict[str, Any]
) -> AsyncIterator[tuple[socket.socket, bytes]]:
    """A raw HTTP client with a small receive buffer that sends a put and reads only the
    response's head; yields the socket and that head."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        content = orjson.dumps(body)
        request = (
            b"POST /v1/queue/put HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (parts.netloc.encode(), len(content))
        )
        await loop.sock_sendall(sock, request + content)
        head = b""
        async with asyncio.timeout(10):
            while b"\r\n\r\n" not in head:
                piece = await loop.sock_recv(sock, 1024)
                assert piece, f"the connection closed before the response's head: {head!r}"
                head += piece
        yield sock, head.partition(b"\r\n\r\n")[0]
    finally:
        sock.close()


def header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    raise AssertionError(f"no {name!r} header in {head!r}")


async def read_to_the_end(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server still sends, until it closes the connection."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    async with asyncio.timeout(timeout):
        while piece := await loop.sock_recv(sock, 65536):
            received += piece
    return bytes(received)


async def test_a_client_that_stops_reading_is_cut_off_and_its_job_cancelled(
    api_app: tuple[str, Starlette], upstream: tuple[Settings, SseUpstream]
) -> None:
    url, app = api_app
    worker_settings, _ = upstream
    async with (
        running_worker(worker_settings),
        stalled_client(url, streaming_put()) as (sock, head),
        httpx.AsyncClient(base_url=url) as api,
    ):
        assert head.startswith(b"HTTP/1.1 200"), head
        assert header(head, b"content-type").startswith("text/event-stream")
        task_id = header(head, b"x-task-id")
        # ... and the client reads nothing more
        seen = await wait_view(
            api, task_id, lambda v: v["status"] not in ("queued", "running"), timeout=10
        )
        assert seen["status"] == "cancelled", seen["result"]
        assert seen["status_code"] == 499
        assert "too slowly" in seen["result"]["error"]["message"]
        hub = app.state.queue.hub
        await eventually(lambda: hub.channels == 0, timeout=5, what="the hub to let go")
        # the worker stopped the job: its stream entry is acknowledged

        async def nothing_in_flight() -> bool:
            stats = (await api.get("/v1/queue/streams/stats")).json()["data"]
            return stats["levels"]["0"]["in_flight"] == 0

        await eventually(nothing_in_flight, timeout=5)
        rest = await read_to_the_end(sock)  # the response was cut off: the server closes
        assert b"data: [DONE]" not in rest
        assert (await view(api, task_id))["status"] == "cancelled"


async def test_a_client_that_keeps_reading_gets_the_whole_stream(
    api_app: tuple[str, Starlette], upstream: tuple[Settings, SseUpstream]
) -> None:
    """The same small buffer does not trouble a client that reads as the events come."""
    url, app = api_app
    worker_settings, sse = upstream
    async with running_worker(worker_settings), httpx.AsyncClient(base_url=url) as api:
        async with api.stream("POST", "/v1/queue/put", json=streaming_put(events=300)) as r:
            assert r.status_code == 200
            task_id = r.headers["x-task-id"]
            received = b"".join([chunk async for chunk in r.aiter_bytes()])
        assert received.endswith(b"data: [DONE]\n\n")
        assert received.count(CHUNK_TEXT.encode()) == 299
        assert b"slow_reader" not in received
        assert sse.finished
        assert (await view(api, task_id))["status"] == "succeeded"
        assert app.state.queue.hub.channels == 0


def test_the_buffer_is_a_setting_of_at_least_1024_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().stream_client_buffer_bytes == 1024 * 1024
    monkeypatch.setenv("QUEUE_STREAM_CLIENT_BUFFER_BYTES", "4096")
    assert Settings().stream_client_buffer_bytes == 4096
    monkeypatch.setenv("QUEUE_STREAM_CLIENT_BUFFER_BYTES", "1023")
    with pytest.raises(ValidationError, match="greater than or equal to 1024"):
        Settings()
