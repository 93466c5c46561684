"""Blocking and streaming puts, end to end over real sockets (API, worker, mock upstream)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from arq.worker import Worker

from tests import helpers
from tests.helpers import eventually
from workers.sse import parse_event


def put_body(mode: str, text: str = "hello", timeout: int | None = None, **data: Any) -> Any:
    return helpers.put_body(
        "interactive", level=0, mode=mode, text=text, model="deepseek-r1", timeout=timeout, **data
    )


async def read_events(response: httpx.Response) -> list[bytes]:
    """The raw SSE events of a streamed response, each with its blank line."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
    return [part + b"\n\n" for part in buffer.split(b"\n\n") if part]


def without_ids(raw: bytes) -> Any:
    """A chunk's JSON with the per-response `id` and `created` removed."""
    data = parse_event(raw).data
    if data == b"[DONE]":
        return "[DONE]"
    chunk = orjson.loads(data)
    chunk.pop("id", None)
    chunk.pop("created", None)
    return chunk


async def test_blocking_returns_the_upstream_body_and_status(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    response = await api.post("/v1/queue/put", json=put_body("blocking", "are you there"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert "are you there" in body["choices"][0]["message"]["content"]
    assert body["choices"][0]["message"]["reasoning_content"]


async def test_blocking_passes_an_upstream_4xx_through(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    response = await api.post("/v1/queue/put", json=put_body("blocking", mock={"status": 429}))
    assert response.status_code == 429
    assert "error" in response.json()


async def test_blocking_timeout_is_408_and_the_job_ends_timeout(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    response = await api.post(
        "/v1/queue/put", json=put_body("blocking", timeout=1, mock={"hang": True})
    )
    assert response.status_code == 408
    envelope = response.json()
    assert envelope["code"] == 408
    assert "within its timeout" in envelope["message"]
    (recorded,) = mock_upstream[1].state.mock_requests
    task_id = response.headers["x-task-id"]
    view = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    assert view["status"] == "timeout"
    assert view["status_code"] == 408
    # and the worker let go of the upstream
    await eventually(
        lambda: recorded.response_id in mock_upstream[1].state.mock_disconnects, timeout=5
    )


async def test_a_blocking_client_that_disconnects_cancels_its_job(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    request = asyncio.create_task(
        api.post("/v1/queue/put", json=put_body("blocking", mock={"hang": True}))
    )
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_requests, timeout=5)
    request.cancel()  # the client goes away
    await eventually(
        lambda: state.mock_requests[0].response_id in state.mock_disconnects, timeout=5
    )


async def test_streaming_relays_every_event_in_order_with_done_last(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    data = {"stream_options": {"include_usage": True}}
    async with api.stream(
        "POST", "/v1/queue/put", json=put_body("streaming", "tell me", **data)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        relayed = await read_events(response)

    async with httpx.AsyncClient() as direct:
        request = put_body("streaming", "tell me", **data)["data"] | {"stream": True}
        async with direct.stream(
            "POST", f"{mock_upstream[0]}/v1/chat/completions", json=request
        ) as upstream:
            expected = await read_events(upstream)

    assert all(raw.startswith(b"data: ") for raw in relayed)
    assert relayed[-1] == b"data: [DONE]\n\n"
    assert [without_ids(raw) for raw in relayed] == [without_ids(raw) for raw in expected]
    kinds = [next(iter(c["choices"][0]["delta"]), None) for c in map(without_ids, relayed[:-2])]
    assert "reasoning_content" in kinds
    assert "content" in kinds
    assert kinds.index("reasoning_content") < kinds.index("content")


async def test_a_streamed_job_is_stored_assembled(api: httpx.AsyncClient, worker: Worker) -> None:
    data = {"stream_options": {"include_usage": True}}
    async with api.stream(
        "POST", "/v1/queue/put", json=put_body("streaming", "sum up", **data)
    ) as response:
        task_id = response.headers["x-task-id"]
        chunks = [without_ids(raw) for raw in await read_events(response)][:-1]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    view = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["object"] == "chat.completion"
    message = result["choices"][0]["message"]
    assert message["content"] == "".join(d.get("content") or "" for d in deltas)
    assert "sum up" in message["content"]
    assert message["reasoning_content"] == "".join(d.get("reasoning_content") or "" for d in deltas)
    assert message["reasoning_content"]
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == chunks[-1]["usage"]


async def test_streaming_refused_upstream_answers_plain_json_with_its_status(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    response = await api.post("/v1/queue/put", json=put_body("streaming", mock={"status": 503}))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()
    view = (await api.get(f"/v1/queue/{response.headers['x-task-id']}")).json()["data"]
    assert (view["status"], view["status_code"]) == ("failed", 503)


async def test_a_stream_that_breaks_midway_ends_with_an_error_event(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    body = put_body("streaming", mock={"break_after": 3})
    async with api.stream("POST", "/v1/queue/put", json=body) as response:
        assert response.status_code == 200
        events = await read_events(response)
    assert len(events) == 4
    assert all(raw.startswith(b"data: {") for raw in events[:3])
    last = parse_event(events[-1])
    assert last.event == "error"
    assert "upstream request failed" in orjson.loads(last.data)["error"]["message"]


async def test_streaming_timeout_ends_the_stream_and_the_job_as_timeout(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    body = put_body("streaming", timeout=1, mock={"tokens": 500, "token_latency": 0.05})
    async with api.stream("POST", "/v1/queue/put", json=body) as response:
        assert response.status_code == 200
        events = await read_events(response)
        task_id = response.headers["x-task-id"]
    assert 5 < len(events) < 100
    last = parse_event(events[-1])
    assert last.event == "error"
    assert orjson.loads(last.data)["error"]["type"] == "timeout"
    view = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    assert view["status"] == "timeout"


async def test_a_disconnecting_stream_client_closes_the_upstream_connection(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    body = put_body("streaming", mock={"tokens": 1000, "token_latency": 0.02})
    async with api.stream("POST", "/v1/queue/put", json=body) as response:
        task_id = response.headers["x-task-id"]
        lines = response.aiter_lines()
        for _ in range(3):
            await anext(lines)
    left = asyncio.get_running_loop().time()  # the client is gone
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_disconnects, timeout=5, interval=0.01)
    assert asyncio.get_running_loop().time() - left < 1.0
    assert state.mock_disconnects == [state.mock_requests[0].response_id]
    view = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    assert view["status"] == "cancelled"
