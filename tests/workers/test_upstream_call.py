"""UpstreamCaller: attempts, retries and relays, against real upstreams over real sockets
and the task channel on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from queue_service.models import ResponseMode, Status
from queue_service.store import Outcome, Store, TaskRecord
from queue_service.store.events import Chunk, Head
from queue_service.timing import now_ms
from tests.helpers import eventually
from tests.servers import serve
from workers.adapters import ADAPTERS, Upstream
from workers.budget_gate import BudgetGate
from workers.routing import UpstreamRoute
from workers.sse import parse_event
from workers.upstream_call import RetryPolicy, SizeLimits, UpstreamCaller

from .conftest import Listen

QUEUE = "calls"
CHAT = ADAPTERS["/v1/chat/completions"]
ROOMY = SizeLimits(max_events=10_000, max_stream_bytes=1 << 20, max_result_bytes=1 << 20)
EPSILON = 0.01
"""Slack between the mock's wall clock and the caller's sleeps."""

MockUpstream = tuple[str, Any]


def record(timeout_s: float = 30.0, mode: ResponseMode = ResponseMode.STREAMING) -> TaskRecord:
    created = now_ms()
    return TaskRecord(
        task_id=f"task-{uuid.uuid4().hex[:8]}",
        queue=QUEUE,
        level=0,
        mode=mode,
        endpoint=CHAT.endpoint,
        data=b"{}",
        callback_url="",
        tenant="",
        status=Status.RUNNING,
        created_at=created,
        deadline=created + int(timeout_s * 1000),
    )


def chat(stream: bool = False, **mock: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        data["stream"] = True
    if mock:
        data["mock"] = mock
    return data


def caller(
    http: httpx.AsyncClient,
    store: Store,
    max_retries: int = 0,
    base: float = 0.01,
    cap: float = 0.02,
    limits: SizeLimits = ROOMY,
) -> UpstreamCaller:
    policy = RetryPolicy(max_retries, base, cap)
    return UpstreamCaller(http, store.tasks, policy, limits, BudgetGate(store.budgets))


def route(url: str, timeout: float | None = None) -> UpstreamRoute:
    return UpstreamRoute(Upstream(url), timeout, ())


def requests(mock: MockUpstream) -> list[Any]:
    recorded: list[Any] = mock[1].state.mock_requests
    return recorded


def gaps(mock: MockUpstream) -> list[float]:
    times = [request.received_at for request in requests(mock)]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def error_of(outcome: Outcome) -> dict[str, Any]:
    error: dict[str, Any] = orjson.loads(outcome.body)["error"]
    return error


def channel_of(store: Store, task: TaskRecord) -> str:
    return store.keys.task_channel(task.queue, task.task_id)


# -- answers in one piece ---------------------------------------------------------------


async def test_an_answer_is_the_upstreams_status_body_and_content_type(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    task = record(mode=ResponseMode.BLOCKING)
    outcome = await caller(http, store).call(
        task, CHAT, route(mock_upstream[0]), chat(reply="pong"), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.SUCCEEDED, 200)
    assert outcome.content_type == "application/json"
    body = orjson.loads(outcome.body)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "pong"


async def test_a_non_json_answer_keeps_its_bytes_and_content_type(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    speech = ADAPTERS["/v1/audio/speech"]
    data = {"model": "tts-1", "input": "hello there", "voice": "alloy", "response_format": "wav"}
    outcome = await caller(http, store).call(
        record(mode=ResponseMode.BLOCKING), speech, route(mock_upstream[0]), data, relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.SUCCEEDED, 200)
    assert outcome.content_type == "audio/wav"
    assert outcome.body.startswith(b"RIFF")


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_4xx_is_not_retried(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, status: int
) -> None:
    outcome = await caller(http, store, max_retries=3).call(
        record(), CHAT, route(mock_upstream[0]), chat(status=status), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, status)
    assert error_of(outcome)["message"] == f"Mock error {status}."  # the upstream's own body
    assert len(requests(mock_upstream)) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_429_and_5xx_are_retried_up_to_max_retries_with_backoff(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, status: int
) -> None:
    unlucky = caller(http, store, max_retries=2, base=0.05, cap=0.1)
    outcome = await unlucky.call(
        record(), CHAT, route(mock_upstream[0]), chat(status=status), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, status)
    assert error_of(outcome)["message"] == f"Mock error {status}."
    assert len(requests(mock_upstream)) == 3
    first, second = gaps(mock_upstream)  # backoff: 0.025-0.05 s, then 0.05-0.1 s
    assert first >= 0.025 - EPSILON
    assert second >= 0.05 - EPSILON


async def test_a_retry_that_gets_through_succeeds(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    outcome = await caller(http, store, max_retries=2).call(
        record(), CHAT, route(mock_upstream[0]), chat(status=503, fail_times=2), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.SUCCEEDED, 200)
    assert len(requests(mock_upstream)) == 3


async def test_retry_after_is_honoured_over_the_backoff(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    mock = chat(status=429, retry_after=0.3, fail_times=1)
    outcome = await caller(http, store, max_retries=1, base=0.01, cap=0.01).call(
        record(), CHAT, route(mock_upstream[0]), mock, relay=False
    )
    assert outcome.status is Status.SUCCEEDED
    (gap,) = gaps(mock_upstream)
    assert gap >= 0.3 - EPSILON


@pytest.mark.parametrize(
    ("mock", "base"),
    [({"status": 503, "retry_after": 0.2}, 0.01), ({"status": 503}, 0.2)],
    ids=["retry-after", "backoff"],
)
async def test_retries_never_go_past_the_deadline(
    http: httpx.AsyncClient,
    store: Store,
    mock_upstream: MockUpstream,
    mock: dict[str, Any],
    base: float,
) -> None:
    task = record(timeout_s=0.7)
    patient = caller(http, store, max_retries=50, base=base, cap=base)
    outcome = await patient.call(task, CHAT, route(mock_upstream[0]), chat(**mock), relay=False)
    returned = time.time()
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 503)
    deadline = task.deadline / 1000
    assert 2 <= len(requests(mock_upstream)) <= 8  # it did retry, while there was time
    # No retry was scheduled past the deadline: each one started before it (give or take a
    # sleep's lateness), and the call ended with the last attempt rather than waiting on.
    assert all(request.received_at < deadline + 0.05 for request in requests(mock_upstream))
    assert returned < deadline + 0.25


async def test_a_retry_after_beyond_the_deadline_ends_at_once(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    started = time.monotonic()
    outcome = await caller(http, store, max_retries=5).call(
        record(timeout_s=5),
        CHAT,
        route(mock_upstream[0]),
        chat(status=429, retry_after=30),
        relay=False,
    )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 429)
    assert time.monotonic() - started < 2
    assert len(requests(mock_upstream)) == 1


# -- connections, timeouts ---------------------------------------------------------------


@asynccontextmanager
async def hanging_up() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that reads each request and hangs up without answering; counts them."""
    accepted: list[int] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", accepted


@contextmanager
def refusing() -> Iterator[str]:
    """A loopback port bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_dropped_connection_is_502_and_retried(
    http: httpx.AsyncClient, store: Store
) -> None:
    async with hanging_up() as (url, accepted):
        outcome = await caller(http, store, max_retries=2).call(
            record(), CHAT, route(url), chat(), relay=False
        )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 502)
    message = error_of(outcome)["message"]
    assert message.startswith("upstream request failed: RemoteProtocolError")
    assert len(accepted) == 3


async def test_a_refused_connection_is_502_naming_the_error(
    http: httpx.AsyncClient, store: Store
) -> None:
    with refusing() as url:
        outcome = await caller(http, store, max_retries=1).call(
            record(), CHAT, route(url), chat(), relay=False
        )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 502)
    error = error_of(outcome)
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("upstream request failed: ConnectError")


async def test_the_routes_timeout_is_504_and_retried(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    started = time.monotonic()
    outcome = await caller(http, store, max_retries=1).call(
        record(), CHAT, route(mock_upstream[0], timeout=0.2), chat(hang=True), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 504)
    assert error_of(outcome)["message"] == "upstream did not answer within 0.2s"
    assert time.monotonic() - started >= 0.4
    assert len(requests(mock_upstream)) == 2
    # The connection of each timed-out attempt was closed (the mock saw its client leave).
    ids = {request.response_id for request in requests(mock_upstream)}
    await eventually(lambda: set(mock_upstream[1].state.mock_disconnects) == ids)


async def test_the_jobs_own_deadline_passes_through_unanswered(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream
) -> None:
    """A timeout around the call (the executor's deadline) is not taken for the route's."""
    slow_route = route(mock_upstream[0], timeout=30)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await caller(http, store, max_retries=3).call(
                record(), CHAT, slow_route, chat(hang=True), relay=False
            )
    assert len(requests(mock_upstream)) == 1


# -- streams -----------------------------------------------------------------------------


async def test_a_stream_is_relayed_head_then_each_event_and_assembled(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, listen: Listen
) -> None:
    task = record()
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store).call(
            task, CHAT, route(mock_upstream[0]), chat(stream=True, tokens=3), relay=True
        )
        head, *chunks = await channel.events()
    assert head == Head(200, "text/event-stream; charset=utf-8")
    assert all(isinstance(chunk, Chunk) for chunk in chunks)
    raws = [chunk.raw for chunk in chunks if isinstance(chunk, Chunk)]
    assert len(raws) == 6  # role, three tokens, finish, [DONE]: one event per message
    assert all(raw.startswith(b"data: ") and raw.endswith(b"\n\n") for raw in raws)
    assert raws[-1] == b"data: [DONE]\n\n"

    assert (outcome.status, outcome.status_code) == (Status.SUCCEEDED, 200)
    assert outcome.content_type == "application/json"
    body = orjson.loads(outcome.body)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2"}
    assert body["choices"][0]["finish_reason"] == "stop"
    # What was relayed assembles into exactly what was stored.
    assembler = CHAT.assembler()
    for raw in raws:
        assembler.feed(parse_event(raw))
    assert assembler.result() == outcome.body


# One of each: comment, CRLF, `event:` name, multi-line data (JSON split over two lines), id.
RAW_EVENTS = [
    b": keep-alive\r\n\r\n",
    b'event: chunk\r\ndata: {"id":"x","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\r\n\r\n',
    b'id: 2\nevent: chunk\ndata: {"choices":[{"index":0,\ndata: "delta":{"content":"lo"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


async def test_the_relay_passes_each_event_on_byte_for_byte(
    http: httpx.AsyncClient, store: Store, listen: Listen
) -> None:
    stream = b"".join(RAW_EVENTS)

    async def awkward(request: Request) -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(stream), 7):  # cuts fall anywhere, CRLFs included
                yield stream[start : start + 7]

        return StreamingResponse(pieces(), media_type="text/event-stream")

    app = Starlette(routes=[Route(CHAT.endpoint, awkward, methods=["POST"])])
    task = record()
    async with serve(app) as url, listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store).call(
            task, CHAT, route(url), chat(stream=True), relay=True
        )
        head, *chunks = await channel.events()
    assert head == Head(200, "text/event-stream; charset=utf-8")
    assert chunks == [Chunk(raw) for raw in RAW_EVENTS]
    assert outcome.status is Status.SUCCEEDED
    message = orjson.loads(outcome.body)["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hello"}


async def test_a_stream_not_relayed_publishes_nothing_and_is_assembled(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, listen: Listen
) -> None:
    task = record(mode=ResponseMode.CALLBACK)
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store).call(
            task, CHAT, route(mock_upstream[0]), chat(stream=True, reply="a b"), relay=False
        )
        assert await channel.events() == []
    assert outcome.status is Status.SUCCEEDED
    assert orjson.loads(outcome.body)["choices"][0]["message"]["content"] == "a b"


async def test_a_stream_refused_before_its_first_event_is_retried(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, listen: Listen
) -> None:
    task = record()
    data = chat(stream=True, tokens=2, status=503, fail_times=1)
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store, max_retries=1).call(
            task, CHAT, route(mock_upstream[0]), data, relay=True
        )
        events = await channel.events()
    assert outcome.status is Status.SUCCEEDED
    assert len(requests(mock_upstream)) == 2
    assert [type(event) for event in events] == [Head] + [Chunk] * 5  # the refusal sent none


async def test_a_stream_refused_with_a_4xx_is_its_json_answer(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, listen: Listen
) -> None:
    task = record()
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store, max_retries=2).call(
            task, CHAT, route(mock_upstream[0]), chat(stream=True, status=401), relay=True
        )
        assert await channel.events() == []
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 401)
    assert outcome.content_type == "application/json"
    assert error_of(outcome)["message"] == "Mock error 401."
    assert len(requests(mock_upstream)) == 1


@pytest.mark.parametrize(
    ("mock", "timeout", "status", "message", "relayed_events"),
    [
        ({"break_after": 2}, None, 502, "upstream request failed: RemoteProtocolError", 2),
        ({"error_after": 2}, None, 502, "upstream stream error: The server had an error", 3),
        ({"token_latency": 5}, 0.3, 504, "upstream did not answer within 0.3s", 2),
    ],
    ids=["connection-dropped", "in-band-error", "route-timeout"],
)
@pytest.mark.parametrize("relay", [True, False], ids=["relayed", "not-relayed"])
async def test_a_stream_failing_after_an_event_is_retried_only_if_nothing_was_relayed(
    http: httpx.AsyncClient,
    store: Store,
    mock_upstream: MockUpstream,
    listen: Listen,
    mock: dict[str, Any],
    timeout: float | None,
    status: int,
    message: str,
    relayed_events: int,
    relay: bool,
) -> None:
    task = record()
    data = chat(stream=True, tokens=5, **mock)
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store, max_retries=2).call(
            task, CHAT, route(mock_upstream[0], timeout), data, relay
        )
        events = await channel.events()
    assert (outcome.status, outcome.status_code) == (Status.FAILED, status)
    assert error_of(outcome)["message"].startswith(message)
    if relay:  # the client has part of the answer: a rerun would repeat it
        assert len(requests(mock_upstream)) == 1
        relayed = [event for event in events if isinstance(event, Chunk)]
        assert len(relayed) == relayed_events  # an in-band error event is relayed too
    else:
        assert len(requests(mock_upstream)) == 3
        assert events == []


# -- size limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "said"),
    [
        (SizeLimits(3, 1 << 20, 1 << 20), "upstream stream went past 3 events or 1048576 bytes"),
        (SizeLimits(10_000, 400, 1 << 20), "upstream stream went past 10000 events or 400 bytes"),
    ],
    ids=["events", "stream-bytes"],
)
async def test_a_stream_past_its_size_limits_fails_clearly(
    http: httpx.AsyncClient,
    store: Store,
    mock_upstream: MockUpstream,
    listen: Listen,
    limits: SizeLimits,
    said: str,
) -> None:
    task = record()
    async with listen(channel_of(store, task)) as channel:
        outcome = await caller(http, store, max_retries=2, limits=limits).call(
            task, CHAT, route(mock_upstream[0]), chat(stream=True, tokens=50), relay=True
        )
        events = await channel.events()
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 502)
    assert error_of(outcome) == {"message": said, "type": "upstream_too_large"}
    assert len(requests(mock_upstream)) == 1  # not retried
    relayed = [event.raw for event in events if isinstance(event, Chunk)]
    assert len(relayed) <= limits.max_events
    assert sum(map(len, relayed)) <= limits.max_stream_bytes


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_result_past_its_size_limit_fails_clearly(
    http: httpx.AsyncClient, store: Store, mock_upstream: MockUpstream, stream: bool
) -> None:
    limits = SizeLimits(10_000, 1 << 20, 300)
    outcome = await caller(http, store, max_retries=2, limits=limits).call(
        record(), CHAT, route(mock_upstream[0]), chat(stream=stream, tokens=100), relay=False
    )
    assert (outcome.status, outcome.status_code) == (Status.FAILED, 502)
    error = error_of(outcome)
    assert error["type"] == "upstream_too_large"
    assert error["message"].startswith("upstream answer of ")
    assert error["message"].endswith(" bytes is over the limit (300 bytes)")
    size = int(error["message"].split()[3])
    assert size > 300
    assert len(requests(mock_upstream)) == 1
