"""`/v1/completions`: OpenAI legacy (prompt in, text out) completions."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson

from ..sse import SSEEvent
from .base import Upstream, UpstreamReply
from .http import bearer_headers, post_json, stream_json

_LOGPROB_LISTS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")
"""The per-token lists of a choice's `logprobs`, which chunks extend."""


class CompletionsAdapter:
    endpoint = "/v1/completions"

    async def call(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> UpstreamReply:
        return await post_json(client, upstream.url(self.endpoint), data, bearer_headers(upstream))

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return stream_json(client, upstream.url(self.endpoint), data, bearer_headers(upstream))

    def assembler(self) -> CompletionsStreamAssembler:
        return CompletionsStreamAssembler()


class CompletionsStreamAssembler:
    """Joins streamed `text_completion` chunks into the one the non-stream API returns."""

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
        index = choice.get("index", 0)
        state = self._choices.setdefault(
            index, {"text": "", "index": index, "logprobs": None, "finish_reason": None}
        )
        state["text"] += choice.get("text") or ""
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if logprobs:
            joined = state["logprobs"] = state["logprobs"] or {name: [] for name in _LOGPROB_LISTS}
            for name in _LOGPROB_LISTS:
                joined[name].extend(logprobs.get(name) or ())

    def error(self) -> Any | None:
        return self._error

    def result(self) -> bytes:
        completion: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "text_completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": [self._choices[index] for index in sorted(self._choices)],
        }
        if "system_fingerprint" in self._head:
            completion["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            completion["usage"] = self._usage
        return orjson.dumps(completion)
