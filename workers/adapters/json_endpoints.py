"""Endpoints answered in one piece, with no stream form: embeddings, rerank, moderations, images.

All take a JSON body with OpenAI-style auth and pass the upstream's answer through as it is.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from ..sse import SSEEvent
from .base import Upstream, UpstreamReply
from .http import bearer_headers, post_json, stream_json


class OneShotAdapter:
    """An endpoint without a stream form.

    A job that asks for a stream (`data.stream`, or the streaming response mode) is sent
    without `stream`, so the upstream answers in one piece and a streaming client gets that
    answer as a plain response.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        url, headers = upstream.url(self.endpoint), bearer_headers(upstream)
        return await post_json(
            client, url, data, headers, self.default_type(data), max_bytes=max_bytes
        )

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        plain = {name: value for name, value in data.items() if name != "stream"}
        return stream_json(client, upstream.url(self.endpoint), plain, bearer_headers(upstream))

    def default_type(self, data: dict[str, Any]) -> str:
        """The content type assumed when the upstream sends none."""
        return "application/json"

    def assembler(self) -> NoStreamAssembler:
        return NoStreamAssembler(self.endpoint)


class NoStreamAssembler:
    """Used only if the upstream answers an event stream anyway: that is an error."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def feed(self, event: SSEEvent) -> None:
        pass

    def error(self) -> Any | None:
        return {"message": f"{self._endpoint} answered an event stream; it has no stream form"}

    def result(self) -> bytes:
        return b""


EMBEDDINGS = OneShotAdapter("/v1/embeddings")
RERANK = OneShotAdapter("/v1/rerank")
"""Jina-style rerank: `model, query, documents, top_n` -> `results` by relevance."""
MODERATIONS = OneShotAdapter("/v1/moderations")
IMAGES = OneShotAdapter("/v1/images/generations")
"""OpenAI image generation: `data[]` of `b64_json` or `url`, as the request asks."""
REALTIME_SESSIONS = OneShotAdapter("/v1/realtime/sessions")
"""Mints an ephemeral key for a realtime session the client opens itself (the session, a
WebSocket, cannot be queued)."""
