"""`/v1/messages`: the Anthropic Messages API (thinking and tool use included)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson

from ..sse import SSEEvent
from .base import Upstream, UpstreamReply
from .http import post_json, stream_json

ANTHROPIC_VERSION = "2023-06-01"
"""The `anthropic-version` header sent: a job's `data` is the body, it has no room for headers."""

_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
}
"""Delta type -> the block field whose text it extends."""


def anthropic_headers(upstream: Upstream) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if upstream.api_key:
        headers["x-api-key"] = upstream.api_key
    return headers


class MessagesAdapter:
    endpoint = "/v1/messages"

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        url = upstream.url(self.endpoint)
        return await post_json(client, url, data, anthropic_headers(upstream), max_bytes=max_bytes)

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return stream_json(client, upstream.url(self.endpoint), data, anthropic_headers(upstream))

    def assembler(self) -> MessagesStreamAssembler:
        return MessagesStreamAssembler()


class MessagesStreamAssembler:
    """Rebuilds the `message` object the non-stream API returns from a stream's events.

    `message_start` carries the message with empty content; each content block starts whole
    but empty and grows by deltas; tool input arrives as JSON text fragments, parsed at the
    end; `message_delta` sets the stop reason and updates the (cumulative) usage.
    """

    def __init__(self) -> None:
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._tool_json: dict[int, str] = {}
        self._error: Any = None

    def feed(self, event: SSEEvent) -> None:
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type", event.event)
        if kind == "message_start":
            self._message = dict(payload.get("message") or {})
        elif kind == "content_block_start":
            self._blocks[payload.get("index", 0)] = dict(payload.get("content_block") or {})
        elif kind == "content_block_delta":
            self._feed_delta(payload.get("index", 0), payload.get("delta") or {})
        elif kind == "message_delta":
            self._message.update(payload.get("delta") or {})
            usage = self._message.setdefault("usage", {})
            usage.update(payload.get("usage") or {})
        elif kind == "error":
            self._error = payload.get("error", payload)

    def _feed_delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.setdefault(index, {})
        kind = delta.get("type")
        if kind == "input_json_delta":
            fragment = delta.get("partial_json") or ""
            self._tool_json[index] = self._tool_json.get(index, "") + fragment
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        elif kind in _DELTA_FIELDS:
            field = _DELTA_FIELDS[kind]
            block[field] = block.get(field, "") + (delta.get(field) or "")

    def error(self) -> Any | None:
        return self._error

    def result(self) -> bytes:
        content = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if self._tool_json.get(index):  # no fragments (or only ""): the start's `{}` stays
                block["input"] = _parsed(self._tool_json[index])
            content.append(block)
        return orjson.dumps({**self._message, "content": content})


def _parsed(text: str) -> Any:
    """Tool input as JSON; kept as the text received when it is not (a cut-off stream)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
