"""`/v1/chat/completions`: OpenAI-compatible chat (DeepSeek `reasoning_content` included)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson

from ..sse import SSEEvent
from .base import Upstream, UpstreamReply
from .http import bearer_headers, post_json, stream_json


class ChatCompletionsAdapter:
    endpoint = "/v1/chat/completions"

    async def call(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> UpstreamReply:
        return await post_json(client, upstream.url(self.endpoint), data, bearer_headers(upstream))

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return stream_json(client, upstream.url(self.endpoint), data, bearer_headers(upstream))

    def assembler(self) -> ChatStreamAssembler:
        return ChatStreamAssembler()


class ChatStreamAssembler:
    """Joins `chat.completion.chunk`s into the `chat.completion` the non-stream API returns."""

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
            index,
            {"role": "assistant", "content": None, "reasoning": "", "tools": {}, "finish": None},
        )
        delta = choice.get("delta") or {}
        if delta.get("role"):
            state["role"] = delta["role"]
        if delta.get("content") is not None:  # null throughout a tool-call-only answer
            state["content"] = (state["content"] or "") + delta["content"]
        state["reasoning"] += delta.get("reasoning_content") or ""
        for call in delta.get("tool_calls") or ():
            joined = state["tools"].setdefault(
                call.get("index", 0), {"id": None, "type": "function", "name": "", "arguments": ""}
            )
            joined["id"] = call.get("id") or joined["id"]
            joined["type"] = call.get("type") or joined["type"]
            function = call.get("function") or {}
            joined["name"] += function.get("name") or ""
            joined["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            state["finish"] = choice["finish_reason"]

    def error(self) -> Any | None:
        return self._error

    def result(self) -> bytes:
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: dict[str, Any] = {"role": state["role"], "content": state["content"]}
            if state["reasoning"]:
                message["reasoning_content"] = state["reasoning"]
            if state["tools"]:
                message["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": call["type"],
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                    for _, call in sorted(state["tools"].items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": state["finish"],
                }
            )
        completion: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "chat.completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": choices,
        }
        if "system_fingerprint" in self._head:
            completion["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            completion["usage"] = self._usage
        return orjson.dumps(completion)
