"""One-piece endpoint adapters against a scripted upstream (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from workers.adapters.audio_speech import SpeechAdapter
from workers.adapters.base import Upstream
from workers.adapters.json_endpoints import EMBEDDINGS
from workers.sse import parse_event

UPSTREAM = Upstream("http://upstream", "k")
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ({}, "audio/mpeg"),
        ({"response_format": "wav"}, "audio/wav"),
        ({"response_format": "opus"}, "audio/opus"),
        ({"response_format": "weird"}, "application/octet-stream"),
    ],
)
async def test_unlabelled_audio_is_labelled_by_the_format_asked_for(
    data: dict[str, str], content_type: str
) -> None:
    async with client(lambda request: httpx.Response(200, content=b"\xff\xfb")) as http:
        reply = await SpeechAdapter().call(http, UPSTREAM, {"input": "hi", **data})
    assert (reply.body, reply.content_type) == (b"\xff\xfb", content_type)


async def test_the_upstreams_own_label_and_retry_after_are_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://upstream/v1/audio/speech"
        assert request.headers["authorization"] == "Bearer k"
        headers = {"content-type": "audio/flac", "retry-after": "2"}
        return httpx.Response(429, content=b"x", headers=headers)

    async with client(handler) as http:
        reply = await SpeechAdapter().call(http, UPSTREAM, {"input": "hi"})
    assert (reply.status_code, reply.content_type, reply.retry_after) == (429, "audio/flac", 2.0)


async def test_a_stream_request_is_sent_without_stream() -> None:
    sent: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return httpx.Response(200, json={"object": "list", "data": []})

    async with (
        client(handler) as http,
        EMBEDDINGS.stream(http, UPSTREAM, {"input": "x", "stream": True}) as response,
    ):
        assert response.headers["content-type"] == "application/json"
    assert sent == [{"input": "x"}]


def test_an_event_stream_from_a_one_shot_endpoint_is_an_error() -> None:
    assembler = EMBEDDINGS.assembler()
    assembler.feed(parse_event(b'data: {"object": "list"}\n\n'))
    error = assembler.error()
    assert isinstance(error, dict)
    assert "/v1/embeddings" in error["message"]
