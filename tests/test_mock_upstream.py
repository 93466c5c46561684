"""The mock upstream model server, driven over a real socket with httpx."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette

from queue_service.mock_upstream import MockConfig, create_mock_app

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]


@dataclass
class Mock:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def disconnects(self) -> list[str]:
        result: list[str] = self.app.state.mock_disconnects
        return result

    async def wait_for_disconnect(self) -> list[str]:
        """Poll: the server notices a disconnect shortly after the client closes."""
        for _ in range(300):
            if self.disconnects:
                break
            await asyncio.sleep(0.01)
        return self.disconnects


@asynccontextmanager
async def serve(config: MockConfig | None = None) -> AsyncIterator[Mock]:
    app = create_mock_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the mock server did not start"
            await asyncio.sleep(0.005)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield Mock(app, client)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    async with serve() as running:
        yield running


def chat(text: str = "hi there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def anthropic(text: str = "hi there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def data_frames(text: str) -> list[str]:
    """The payloads of a `data:`-only event stream, checking its framing."""
    assert text.endswith("\n\n")
    frames = text.split("\n\n")[:-1]
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames), frames
    return [frame.removeprefix("data: ") for frame in frames]


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of an Anthropic stream, checking its framing."""
    assert text.endswith("\n\n")
    events = []
    for frame in text.split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ")
        assert data_line.startswith("data: ")
        events.append((name_line.removeprefix("event: "), orjson.loads(data_line[6:])))
    return events


async def test_healthz(mock: Mock) -> None:
    response = await mock.client.get("/healthz")
    assert response.json() == {"ok": True}


async def test_chat_completion_body_and_recording(mock: Mock) -> None:
    before = time.time()
    response = await mock.client.post(CHAT, json=chat("what is up"), headers={"X-Trace": "7"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello! You said: what is up"}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}

    (recorded,) = mock.app.state.mock_requests
    assert recorded.path == CHAT
    assert recorded.headers["x-trace"] == "7"
    assert recorded.body == chat("what is up")
    assert before <= recorded.received_at <= time.time()
    assert recorded.response_id == body["id"]
    listed = (await mock.client.get("/_mock/requests")).json()
    assert [(r["path"], r["body"]) for r in listed] == [(CHAT, chat("what is up"))]
    await mock.client.delete("/_mock/requests")
    assert (await mock.client.get("/_mock/requests")).json() == []


async def test_text_parts_and_default_model(mock: Mock) -> None:
    content = [{"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {}}]
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": content},
        ]
    }
    reply = (await mock.client.post(CHAT, json=body)).json()
    assert reply["model"] == "mock-model"
    assert reply["choices"][0]["message"]["content"] == "Hello! You said: part one"
    assert reply["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("deepseek-r1", {}),
        ("deepseek-reasoner", {}),
        ("deepseek-chat", {"thinking": {"type": "enabled"}}),
    ],
)
async def test_reasoning_non_stream(mock: Mock, model: str, extra: dict[str, Any]) -> None:
    body = {**chat("why"), "model": model, **extra}
    reply = (await mock.client.post(CHAT, json=body)).json()
    message = reply["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["content"] == "Hello! You said: why"
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


async def test_stream_framing_order_and_usage(mock: Mock) -> None:
    body = chat("stream me", stream=True, stream_options={"include_usage": True})
    body["mock"] = {"reasoning": "thinking hard now"}
    response = await mock.client.post(CHAT, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = data_frames(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-test" for c in chunks)
    *choice_chunks, usage_chunk = chunks
    choices = [c["choices"][0] for c in choice_chunks]
    assert all(c["logprobs"] is None for c in choices)
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert choices[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    kinds = [next(iter(c["delta"])) for c in choices[1:-1]]
    assert kinds == ["reasoning_content"] * 3 + ["content"] * 5
    assert "".join(c["delta"]["reasoning_content"] for c in choices[1:4]) == "thinking hard now"
    assert "".join(c["delta"]["content"] for c in choices[4:-1]) == "Hello! You said: stream me"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 8
    assert mock.disconnects == []


async def test_stream_without_usage_and_exact_tokens(mock: Mock) -> None:
    response = await mock.client.post(CHAT, json=chat(stream=True, mock={"tokens": 50}))
    payloads = data_frames(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert pieces == [f"tok{i} " for i in range(49)] + ["tok49"]


async def test_tool_call(mock: Mock) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    controls = {"tool_call": {"name": "get_weather", "arguments": arguments}}
    reply = (await mock.client.post(CHAT, json=chat(tools=TOOLS, mock=controls))).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": arguments}

    body = chat(tools=TOOLS, mock=controls, stream=True)
    payloads = data_frames((await mock.client.post(CHAT, json=body)).text)
    choices = [orjson.loads(p)["choices"][0] for p in payloads[:-1]]
    fragments = [f for c in choices for f in c["delta"].get("tool_calls", [])]
    assert fragments[0]["id"].startswith("call_")
    assert fragments[0]["type"] == "function"
    assert fragments[0]["function"]["name"] == "get_weather"
    assert all(f["index"] == 0 for f in fragments)
    assert len(fragments) > 3
    assert "".join(f["function"]["arguments"] for f in fragments) == arguments
    assert choices[-1]["finish_reason"] == "tool_calls"

    response = await mock.client.post(CHAT, json=chat(mock=controls))
    assert response.status_code == 400


async def test_anthropic_message(mock: Mock) -> None:
    body = anthropic("hello claude", system="you are nice")
    reply = (await mock.client.post(MESSAGES, json=body)).json()
    assert reply["id"].startswith("msg_")
    assert reply == {
        "id": reply["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": "Hello! You said: hello claude"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 5},
    }


async def test_anthropic_stream_events(mock: Mock) -> None:
    response = await mock.client.post(MESSAGES, json=anthropic("hey", stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["model"] == "claude-test"
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for _, data in events[3:7]]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "Hello! You said: hey"
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {"output_tokens": 4}


async def test_anthropic_thinking(mock: Mock) -> None:
    body = anthropic("hey", thinking={"type": "enabled", "budget_tokens": 1024})
    content = (await mock.client.post(MESSAGES, json=body)).json()["content"]
    assert [block["type"] for block in content] == ["thinking", "text"]
    assert content[0]["thinking"]

    events = named_events((await mock.client.post(MESSAGES, json={**body, "stream": True})).text)
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    delta_types = [
        (d["index"], d["delta"]["type"]) for n, d in events if n == "content_block_delta"
    ]
    first_text = delta_types.index((1, "text_delta"))
    assert {t for _, t in delta_types[: first_text - 1]} == {"thinking_delta"}
    assert delta_types[first_text - 1] == (0, "signature_delta")


async def test_anthropic_tool_use(mock: Mock) -> None:
    controls = {"tool_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    body = anthropic(tools=ANTHROPIC_TOOLS, mock=controls)
    reply = (await mock.client.post(MESSAGES, json=body)).json()
    assert reply["stop_reason"] == "tool_use"
    (block,) = reply["content"]
    assert block["type"] == "tool_use"
    assert block["input"] == {"city": "Oslo"}

    events = named_events((await mock.client.post(MESSAGES, json={**body, "stream": True})).text)
    partial = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert len(partial) > 1
    assert orjson.loads("".join(partial)) == {"city": "Oslo"}


async def test_auth() -> None:
    async with serve(MockConfig(api_key="sekrit")) as mock:
        denied = await mock.client.post(CHAT, json=chat(), headers={"authorization": "Bearer no"})
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        allowed = await mock.client.post(
            CHAT, json=chat(), headers={"authorization": "Bearer sekrit"}
        )
        assert allowed.status_code == 200

        denied = await mock.client.post(MESSAGES, json=anthropic())
        assert denied.status_code == 401
        assert denied.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Invalid API key."},
        }
        allowed = await mock.client.post(
            MESSAGES, json=anthropic(), headers={"x-api-key": "sekrit"}
        )
        assert allowed.status_code == 200


async def test_status_and_retry_after(mock: Mock) -> None:
    controls = {"status": 429, "retry_after": 2}
    response = await mock.client.post(CHAT, json=chat(stream=True, mock=controls))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert isinstance(error["message"], str)

    response = await mock.client.post(MESSAGES, json=anthropic(mock={"status": 529}))
    assert response.status_code == 529
    assert "retry-after" not in response.headers
    assert response.json()["error"]["type"] == "overloaded_error"


async def test_fail_times_per_key(mock: Mock) -> None:
    controls = {"status": 503, "fail_times": 2, "key": "job-1"}
    codes = [(await mock.client.post(CHAT, json=chat(mock=controls))).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    other = {**controls, "key": "job-2"}
    assert (await mock.client.post(CHAT, json=chat(mock=other))).status_code == 503
    assert mock.app.state.mock_fail_counts == {"job-1": 2, "job-2": 1}


@pytest.mark.parametrize(
    "controls",
    [
        {"nope": 1},
        {"ttft": "slow"},
        {"retry_after": 1},
        {"tool_call": {"name": "f", "arguments": "[1]"}},
    ],
)
async def test_invalid_controls(mock: Mock, controls: dict[str, Any]) -> None:
    response = await mock.client.post(CHAT, json=chat(tools=TOOLS, mock=controls))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = await mock.client.post(MESSAGES, json=anthropic(tools=TOOLS, mock=controls))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_invalid_body(mock: Mock) -> None:
    response = await mock.client.post(CHAT, content=b"{not json")
    assert response.status_code == 400
    assert mock.app.state.mock_requests[0].body == "{not json"
    assert (await mock.client.post(MESSAGES, json={"model": "x"})).status_code == 400


async def read_into(response: httpx.Response, received: list[str]) -> None:
    async for text in response.aiter_text():
        received.append(text)


async def test_break_after_is_an_abrupt_close(mock: Mock) -> None:
    received: list[str] = []
    body = chat(stream=True, mock={"break_after": 3})
    async with mock.client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await read_into(response, received)
    assert len(data_frames("".join(received))) == 3


async def test_error_after(mock: Mock) -> None:
    body = chat(stream=True, mock={"error_after": 2})
    payloads = data_frames((await mock.client.post(CHAT, json=body)).text)
    assert len(payloads) == 3
    assert orjson.loads(payloads[-1])["error"]["type"] == "server_error"

    body = anthropic(stream=True, mock={"error_after": 2})
    events = named_events((await mock.client.post(MESSAGES, json=body)).text)
    assert [name for name, _ in events] == ["message_start", "content_block_start", "error"]
    assert events[-1][1]["type"] == "error"


async def test_hang_until_client_leaves(mock: Mock) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await mock.client.post(CHAT, json=chat(mock={"hang": True}), timeout=0.2)
    (recorded,) = mock.app.state.mock_requests
    assert await mock.wait_for_disconnect() == [recorded.response_id]
    listed = (await mock.client.get("/_mock/disconnects")).json()
    assert listed == [recorded.response_id]


async def test_abandoned_non_stream_wait_is_recorded(mock: Mock) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await mock.client.post(CHAT, json=chat(mock={"ttft": 3}), timeout=0.2)
    (recorded,) = mock.app.state.mock_requests
    assert await mock.wait_for_disconnect() == [recorded.response_id]


async def test_abandoned_stream_is_recorded(mock: Mock) -> None:
    body = chat(stream=True, mock={"tokens": 100, "token_latency": 0.02})
    async with mock.client.stream("POST", CHAT, json=body) as response:
        lines = response.aiter_lines()
        first = orjson.loads((await anext(lines)).removeprefix("data: "))
        await anext(lines)
        await anext(lines)
    assert await mock.wait_for_disconnect() == [first["id"]]


async def test_ttft_and_token_latency(mock: Mock) -> None:
    started = time.monotonic()
    await mock.client.post(CHAT, json=chat(mock={"ttft": 0.2}))
    assert time.monotonic() - started >= 0.2

    started = time.monotonic()
    await mock.client.post(CHAT, json=chat(mock={"reply": "a b c d e", "token_latency": 0.05}))
    assert time.monotonic() - started >= 0.2

    async with serve(MockConfig(ttft=0.2)) as slow:
        started = time.monotonic()
        async with slow.client.stream("POST", CHAT, json=chat(stream=True)) as response:
            await anext(response.aiter_lines())
            assert time.monotonic() - started >= 0.2


async def test_callback_inbox_records_what_it_is_sent(mock: Mock) -> None:
    callback = {"task_id": "TASK-1", "status": "succeeded", "status_code": 200, "body": {}}
    assert (await mock.client.post("/_mock/callbacks", json=callback)).status_code == 200
    assert (await mock.client.post("/_mock/callbacks", content=b"{")).status_code == 400
    assert (await mock.client.get("/_mock/callbacks")).json() == [callback]
    assert mock.app.state.mock_callbacks == [callback]
