"""What OpenAI-style endpoints share: Bearer JSON requests, and streams of chunks that carry
`id`/`created`/`model`, `choices` deltas, a final `usage` and in-band `error`s."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson

from ..sse import SSEEvent
from .base import StreamAssembler, Upstream, UpstreamReply
from .http import bearer_headers, post_json, stream_json


class OpenAIStyleAdapter:
    """Sends `data` as JSON with the Bearer key; subclasses name the endpoint and assembler."""

    endpoint: str

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        url = upstream.url(self.endpoint)
        return await post_json(client, url, data, bearer_headers(upstream), max_bytes=max_bytes)

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return stream_json(client, upstream.url(self.endpoint), data, bearer_headers(upstream))

    def assembler(self) -> StreamAssembler:
        raise NotImplementedError


class ChunkAssembler:
    """Reads OpenAI-style chunks; subclasses join each choice and build the final object."""

    completion_object: str

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._error: Any = None

    def feed(self, event: SSEEvent) -> None:
        if not event.data or event.data == b"[DONE]":
            return
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self._error = chunk["error"]
            return
        for name in ("id", "created", "model", "system_fingerprint"):
            if name in chunk and name not in self._head:
                self._head[name] = chunk[name]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._feed_choice(choice)

    def _feed_choice(self, choice: dict[str, Any]) -> None:
        raise NotImplementedError

    def _choice(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def error(self) -> Any | None:
        return self._error

    def result(self) -> bytes:
        completion: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": self.completion_object,
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": [self._choice(i, self._choices[i]) for i in sorted(self._choices)],
        }
        if "system_fingerprint" in self._head:
            completion["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            completion["usage"] = self._usage
        return orjson.dumps(completion)
