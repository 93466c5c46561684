"""`/v1/chat/completions`: OpenAI-compatible chat (DeepSeek reasoning included)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from .base import Upstream, UpstreamReply


class ChatCompletionsAdapter:
    endpoint = "/v1/chat/completions"

    def headers(self, upstream: Upstream) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if upstream.api_key:
            headers["authorization"] = f"Bearer {upstream.api_key}"
        return headers

    async def call(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> UpstreamReply:
        response = await client.post(
            upstream.url(self.endpoint), content=orjson.dumps(data), headers=self.headers(upstream)
        )
        content_type = response.headers.get("content-type", "application/json")
        return UpstreamReply(response.status_code, response.content, content_type)
