"""The mock upstream model server, driven over a real socket with httpx."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import socket
import struct
import time
import wave
import zlib
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
from tests.helpers import eventually

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
RERANK = "/v1/rerank"
MODERATIONS = "/v1/moderations"
IMAGES = "/v1/images/generations"
SPEECH = "/v1/audio/speech"
ONE_SHOT_BODIES: dict[str, dict[str, Any]] = {
    EMBEDDINGS: {"input": "some text"},
    RERANK: {"query": "q", "documents": ["d"]},
    MODERATIONS: {"input": "some text"},
    IMAGES: {"prompt": "a cat"},
    SPEECH: {"input": "some text", "voice": "alloy"},
}
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
        return await eventually(lambda: self.disconnects, timeout=3, interval=0.01)


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

        def started() -> bool:
            assert not task.done(), "the mock server did not start"
            return server.started

        await eventually(started, timeout=30, interval=0.005)
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


async def test_legacy_completion_body_and_stream(mock: Mock) -> None:
    body = {"model": "gpt-instruct", "prompt": "once upon a time"}
    reply = (await mock.client.post(COMPLETIONS, json=body)).json()
    assert reply["id"].startswith("cmpl-")
    assert reply == {
        "id": reply["id"],
        "object": "text_completion",
        "created": reply["created"],
        "model": "gpt-instruct",
        "choices": [
            {
                "text": "Hello! You said: once upon a time",
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11},
    }

    streamed = body | {"stream": True, "stream_options": {"include_usage": True}}
    payloads = data_frames((await mock.client.post(COMPLETIONS, json=streamed)).text)
    assert payloads[-1] == "[DONE]"
    *chunks, usage_chunk = [orjson.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in chunks)
    choices = [c["choices"][0] for c in chunks]
    assert "".join(c["text"] for c in choices) == reply["choices"][0]["text"]
    assert [c["finish_reason"] for c in choices] == [None] * 7 + ["stop"]
    assert (usage_chunk["choices"], usage_chunk["usage"]) == ([], reply["usage"])


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt": ["two", "prompts"]},
        {"mock": {"reasoning": True}},
        {"tools": [{}], "mock": {"tool_call": {"name": "f"}}},
    ],
)
async def test_legacy_completions_refuse_what_they_cannot_do(
    mock: Mock, extra: dict[str, Any]
) -> None:
    response = await mock.client.post(COMPLETIONS, json={"prompt": "hi", **extra})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_embeddings_are_deterministic_unit_vectors(mock: Mock) -> None:
    body = {"model": "embed", "input": ["same text", "other text", "same text"]}
    first = (await mock.client.post(EMBEDDINGS, json=body)).json()
    again = (await mock.client.post(EMBEDDINGS, json=body)).json()
    assert first == again
    assert first["object"] == "list"
    assert first["model"] == "embed"
    assert first["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert [d["index"] for d in first["data"]] == [0, 1, 2]
    vectors = [d["embedding"] for d in first["data"]]
    assert vectors[0] == vectors[2] != vectors[1]
    assert all(len(v) == 16 and math.isclose(math.hypot(*v), 1.0) for v in vectors)

    body = {"input": "same text", "dimensions": 5, "encoding_format": "base64"}
    (packed,) = (await mock.client.post(EMBEDDINGS, json=body)).json()["data"]
    floats = struct.unpack("<5f", base64.b64decode(packed["embedding"]))
    plain = await mock.client.post(EMBEDDINGS, json=body | {"encoding_format": "float"})
    expected = plain.json()["data"][0]["embedding"]
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(floats, expected, strict=True))
    assert (await mock.client.post(EMBEDDINGS, json={"input": [[1, 2]]})).status_code == 400


async def test_rerank_orders_documents_by_shared_words(mock: Mock) -> None:
    documents = ["blue sky", "a red car", {"text": "red apple pie"}]
    body = {"model": "rerank", "query": "red apple", "documents": documents}
    reply = (await mock.client.post(RERANK, json=body)).json()
    assert reply["model"] == "rerank"
    assert reply["usage"]["total_tokens"] > 0
    results = reply["results"]
    assert [r["index"] for r in results] == [2, 1, 0]
    assert results[0] == {
        "index": 2,
        "relevance_score": 2 / 3,
        "document": {"text": "red apple pie"},
    }
    assert results[-1]["relevance_score"] == 0.0
    top = await mock.client.post(RERANK, json=body | {"top_n": 1, "return_documents": False})
    assert top.json()["results"] == [{"index": 2, "relevance_score": 2 / 3}]
    invalid = await mock.client.post(RERANK, json=body | {"documents": [{"title": "x"}]})
    assert invalid.status_code == 400


async def test_moderations_flag_trigger_words(mock: Mock) -> None:
    body = {"input": ["I will kill them", "what a lovely day"]}
    reply = (await mock.client.post(MODERATIONS, json=body)).json()
    assert reply["id"].startswith("modr-")
    flagged, clean = reply["results"]
    assert flagged["flagged"] is True
    assert [name for name, hit in flagged["categories"].items() if hit] == ["violence"]
    assert flagged["category_scores"]["violence"] > 0.5 > flagged["category_scores"]["hate"]
    assert clean["flagged"] is False
    assert not any(clean["categories"].values())
    assert set(clean["categories"]) == set(clean["category_scores"])
    assert {"hate", "self-harm/intent", "sexual/minors"} <= set(clean["categories"])


def png_colours(data: bytes) -> set[bytes]:
    """The distinct pixels of an 8-bit RGB PNG, checking its signature, chunk CRCs and size."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, at = {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert data[at + 8 + length : at + 12 + length] == struct.pack(
            ">I", zlib.crc32(kind + body)
        )
        chunks[kind] = body
        at += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (8, 8, 8, 2)
    rows = zlib.decompress(chunks[b"IDAT"])
    assert len(rows) == height * (1 + 3 * width)
    stride = 1 + 3 * width
    assert all(rows[row * stride] == 0 for row in range(height))  # no filter
    pixels = b"".join(rows[row * stride + 1 : (row + 1) * stride] for row in range(height))
    return {pixels[i : i + 3] for i in range(0, len(pixels), 3)}


async def test_images_are_real_pngs_inline_or_by_url(mock: Mock) -> None:
    body = {"model": "dall-e-2", "prompt": "a cat", "n": 2, "response_format": "b64_json"}
    reply = (await mock.client.post(IMAGES, json=body)).json()
    assert isinstance(reply["created"], int)
    images = [base64.b64decode(item["b64_json"]) for item in reply["data"]]
    colours = [png_colours(image) for image in images]
    assert all(len(c) == 1 for c in colours)
    assert colours[0] != colours[1]

    linked = (await mock.client.post(IMAGES, json=body | {"response_format": "url"})).json()
    urls = [item["url"] for item in linked["data"]]
    assert all(url.startswith(str(mock.client.base_url)) for url in urls)
    fetched = [await mock.client.get(url) for url in urls]
    assert all(f.headers["content-type"] == "image/png" for f in fetched)
    assert [f.content for f in fetched] == images
    assert (await mock.client.get("/_mock/images/nothex.png")).status_code == 404
    assert (await mock.client.post(IMAGES, json={"prompt": "x", "n": 11})).status_code == 400


async def test_speech_is_real_audio_in_the_format_asked_for(mock: Mock) -> None:
    body = {"model": "tts-1", "input": "one two three four five", "voice": "alloy"}
    mp3 = await mock.client.post(SPEECH, json=body)
    assert mp3.headers["content-type"] == "audio/mpeg"
    frames = [mp3.content[at : at + 417] for at in range(0, len(mp3.content), 417)]
    assert len(frames) == math.ceil(0.5 / (1152 / 44100))  # 0.1s a word
    assert all(len(f) == 417 and f.startswith(b"\xff\xfb\x90\xc0") for f in frames)

    wav = await mock.client.post(SPEECH, json=body | {"response_format": "wav"})
    assert wav.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 24000)
        assert audio.getnframes() == 12000

    pcm = await mock.client.post(SPEECH, json=body | {"response_format": "pcm", "speed": 2.0})
    assert pcm.headers["content-type"] == "audio/pcm"
    assert len(pcm.content) == 2 * 6000
    refused = await mock.client.post(SPEECH, json=body | {"response_format": "opus"})
    assert refused.status_code == 400


@pytest.mark.parametrize("path", ONE_SHOT_BODIES)
async def test_one_piece_endpoints_honour_the_failure_and_timing_controls(
    mock: Mock, path: str
) -> None:
    body = ONE_SHOT_BODIES[path]
    failing = {"status": 429, "retry_after": 1, "fail_times": 1, "key": path}
    refused = await mock.client.post(path, json=body | {"mock": failing})
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await mock.client.post(path, json=body | {"mock": failing})).status_code == 200

    started = time.monotonic()
    assert (await mock.client.post(path, json=body | {"mock": {"ttft": 0.2}})).status_code == 200
    assert time.monotonic() - started >= 0.2

    wrong = await mock.client.post(path, json=body | {"mock": {"tokens": 3}})
    assert wrong.status_code == 400
    assert "mock.tokens" in wrong.json()["error"]["message"]

    with pytest.raises(httpx.ReadTimeout):
        await mock.client.post(path, json=body | {"mock": {"hang": True}}, timeout=0.2)
    assert await mock.wait_for_disconnect() == [mock.app.state.mock_requests[-1].response_id]


async def test_one_piece_endpoints_use_bearer_auth() -> None:
    async with serve(MockConfig(api_key="sekrit")) as mock:
        body = ONE_SHOT_BODIES[EMBEDDINGS]
        denied = await mock.client.post(EMBEDDINGS, json=body, headers={"x-api-key": "sekrit"})
        assert denied.status_code == 401
        allowed = await mock.client.post(
            EMBEDDINGS, json=body, headers={"authorization": "Bearer sekrit"}
        )
        assert allowed.status_code == 200
