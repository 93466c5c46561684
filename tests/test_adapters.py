"""Every served endpoint end to end over real sockets: put -> worker -> adapter -> mock upstream.

The client must see what the upstream produced: each answer is compared with a direct request
to the mock carrying the same body, per-response `id`s and `created` times left out.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import orjson
import pytest
from arq.worker import Worker

from queue_service.mock_upstream import MockConfig, create_mock_app
from queue_service.settings import Settings
from tests.helpers import callback_settled, put, wait_view
from tests.servers import CallbackReceiver, serve
from workers.sse import parse_event

from .conftest import running_worker
from .test_waiting import read_events

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
SPEECH = "/v1/audio/speech"
TOOL = {"name": "get_weather", "arguments": '{"city": "Paris", "days": [1, 2]}'}


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "deepseek-r1", "messages": [{"role": "user", "content": text}], **extra}


def anthropic(text: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"model": "claude-test", "max_tokens": 256, "messages": messages, **extra}


THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
ONE_PIECE: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (CHAT, chat("hello chat")),
    "messages": (MESSAGES, anthropic("hello claude", system="be nice", **THINKING)),
    "completions": (COMPLETIONS, {"model": "gpt-instruct", "prompt": "once upon a time"}),
    "embeddings": (EMBEDDINGS, {"model": "embed-small", "input": ["first text", "second"]}),
    "rerank": (
        "/v1/rerank",
        {
            "model": "jina-reranker-v2",
            "query": "red apple",
            "documents": ["a red car", {"text": "red apple pie"}, "blue sky"],
            "top_n": 2,
        },
    ),
    "moderations": ("/v1/moderations", {"input": ["I will kill it", "lovely day"]}),
    "images-b64": (
        "/v1/images/generations",
        {"model": "dall-e-2", "prompt": "a cat", "n": 2, "response_format": "b64_json"},
    ),
    "images-url": ("/v1/images/generations", {"prompt": "a dog", "response_format": "url"}),
}
STREAMABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "chat-reasoning": (CHAT, chat("think first")),
    "chat-tool": (
        CHAT,
        chat("weather?", tools=[{"type": "function", "function": {"name": "get_weather"}}])
        | {"mock": {"tool_call": TOOL}},
    ),
    "messages-thinking": (MESSAGES, anthropic("think first", **THINKING)),
    "messages-tool": (
        MESSAGES,
        anthropic("weather?", tools=[{"name": "get_weather", "input_schema": {}}])
        | {"mock": {"tool_call": TOOL}},
    ),
    "completions": (COMPLETIONS, {"model": "gpt-instruct", "prompt": "tell a story"}),
}
USAGE_IN_STREAM = {"stream_options": {"include_usage": True}}
"""OpenAI streams carry usage only when asked; the non-stream request must not ask."""


def job(endpoint: str, data: dict[str, Any], mode: str, callback_url: str | None = None) -> Any:
    body = {"queue": "adapters", "endpoint": endpoint, "level": 0, "data": data}
    return body | {"response_mode": mode, "callback_url": callback_url}


def scrub(value: Any) -> Any:
    """`value` without the `id` and `created` fields each response draws anew."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


async def ask_directly(
    mock_upstream: tuple[str, Any], endpoint: str, data: dict[str, Any]
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(mock_upstream[0] + endpoint, json=data)


def requests_seen(mock_upstream: tuple[str, Any]) -> list[tuple[str, Any]]:
    return [(r.path, r.body) for r in mock_upstream[1].state.mock_requests]


@pytest.mark.parametrize(("endpoint", "data"), ONE_PIECE.values(), ids=ONE_PIECE.keys())
async def test_callback_and_blocking_give_what_the_upstream_answers(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
    endpoint: str,
    data: dict[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, job(endpoint, data, "callback", url))
    (callback,) = await inbox.wait_for(1)
    blocking = await api.post("/v1/queue/put", json=job(endpoint, data, "blocking"))
    direct = await ask_directly(mock_upstream, endpoint, data)

    assert direct.status_code == 200, direct.text
    expected = scrub(direct.json())
    assert (callback["status"], callback["status_code"]) == ("succeeded", 200)
    assert scrub(callback["body"]) == expected
    assert (await wait_view(api, task_id, callback_settled))["result"] == callback["body"]
    assert blocking.status_code == 200
    assert blocking.headers["content-type"] == direct.headers["content-type"]
    assert scrub(blocking.json()) == expected
    assert requests_seen(mock_upstream) == [(endpoint, data)] * 3  # the body passed as it is


@pytest.mark.parametrize(
    ("endpoint", "data"),
    [pytest.param(*case, id=name) for name, case in STREAMABLE.items()],
)
async def test_an_assembled_stream_equals_the_non_stream_answer(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
    endpoint: str,
    data: dict[str, Any],
) -> None:
    url, inbox = receiver
    streamed = data | {"stream": True} | (USAGE_IN_STREAM if endpoint != MESSAGES else {})
    await put(api, job(endpoint, streamed, "callback", url))
    (callback,) = await inbox.wait_for(1)
    blocking = await api.post("/v1/queue/put", json=job(endpoint, streamed, "blocking"))
    direct = await ask_directly(mock_upstream, endpoint, data)

    expected = scrub(direct.json())
    assert (callback["status"], callback["status_code"]) == ("succeeded", 200)
    assert scrub(callback["body"]) == expected
    assert blocking.status_code == 200
    assert scrub(blocking.json()) == expected
    assert [body.get("stream") for _, body in requests_seen(mock_upstream)] == [True, True, None]


def named(raw: bytes) -> tuple[str | None, Any]:
    event = parse_event(raw)
    return event.event, scrub(orjson.loads(event.data))


async def test_messages_streaming_relays_the_anthropic_events_in_order(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    data = anthropic("stream to me", **THINKING)
    async with api.stream("POST", "/v1/queue/put", json=job(MESSAGES, data, "streaming")) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        relayed = [named(raw) for raw in await read_events(reply)]
    async with (
        httpx.AsyncClient() as direct,
        direct.stream("POST", mock_upstream[0] + MESSAGES, json=data | {"stream": True}) as up,
    ):
        expected = [named(raw) for raw in await read_events(up)]

    assert relayed == expected
    names = [name for name, _ in relayed]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert {"ping", "content_block_delta", "message_delta"} <= set(names)
    assert all(name == payload["type"] for name, payload in relayed)


async def test_speech_is_raw_audio_when_blocking_and_base64_in_callbacks(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    data = {"model": "tts-1", "input": "hello from the queue", "voice": "alloy"}
    task_id = await put(api, job(SPEECH, data, "callback", url))
    (callback,) = await inbox.wait_for(1)
    blocking = await api.post("/v1/queue/put", json=job(SPEECH, data, "blocking"))
    direct = await ask_directly(mock_upstream, SPEECH, data)

    assert direct.headers["content-type"] == "audio/mpeg"
    assert blocking.status_code == 200
    assert blocking.headers["content-type"] == "audio/mpeg"
    assert blocking.content == direct.content
    encoded = {"content_type": "audio/mpeg", "base64": base64.b64encode(direct.content).decode()}
    assert callback["body"] == encoded
    assert (await wait_view(api, task_id, callback_settled))["result"] == encoded


async def test_an_endpoint_without_streams_answers_a_streaming_put_in_one_piece(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    data = {"model": "tts-1", "input": "wave to me", "voice": "alloy", "response_format": "wav"}
    response = await api.post("/v1/queue/put", json=job(SPEECH, data, "streaming"))
    direct = await ask_directly(mock_upstream, SPEECH, data)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == direct.content
    assert requests_seen(mock_upstream) == [(SPEECH, data)] * 2  # `stream` was not sent on


async def test_each_protocol_authenticates_its_own_way(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    keyed = create_mock_app(MockConfig(api_key="sekrit"))
    async with serve(keyed) as keyed_url:
        update = {"upstream_url": keyed_url, "upstream_api_key": "sekrit"}
        async with running_worker(settings.model_copy(update=update)):
            for endpoint, data in [ONE_PIECE["messages"], ONE_PIECE["embeddings"]]:
                response = await api.post("/v1/queue/put", json=job(endpoint, data, "blocking"))
                assert response.status_code == 200, response.text
    anthropic_call, openai_call = keyed.state.mock_requests
    assert anthropic_call.headers["x-api-key"] == "sekrit"
    assert anthropic_call.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in anthropic_call.headers
    assert openai_call.headers["authorization"] == "Bearer sekrit"
    assert "x-api-key" not in openai_call.headers


async def test_a_one_shot_429_is_retried_when_its_retry_after_says(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    controls = {"status": 429, "retry_after": 0.5, "fail_times": 1, "key": "embed"}
    data = {"input": "again", "mock": controls}
    started = time.monotonic()
    response = await api.post("/v1/queue/put", json=job(EMBEDDINGS, data, "blocking"))
    assert response.status_code == 200, response.text
    assert time.monotonic() - started >= 0.5  # not the test settings' 0.05s backoff
    assert len(requests_seen(mock_upstream)) == 2
