"""HTTP plumbing the adapters share: auth headers, a one-piece POST, a streamed POST."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson

from ..retry import parse_retry_after
from .base import Upstream, UpstreamReply


def bearer_headers(upstream: Upstream) -> dict[str, str]:
    """A JSON request with OpenAI-style auth (`Authorization: Bearer <key>`) when keyed."""
    headers = {"content-type": "application/json"}
    if upstream.api_key:
        headers["authorization"] = f"Bearer {upstream.api_key}"
    return headers


class AnswerTooLarge(Exception):
    """The upstream's answer went past the size a job may take; reading stopped there."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upstream answer went past {size} bytes")
        self.size = size


async def read_body(response: httpx.Response, max_bytes: int | None) -> bytes:
    """The response's body, read piece by piece: stops past `max_bytes` (AnswerTooLarge),
    so an oversize answer never sits whole in memory."""
    if max_bytes is None:
        return await response.aread()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(int(declared))
    pieces: list[bytes] = []
    size = 0
    async for piece in response.aiter_bytes():
        size += len(piece)
        if size > max_bytes:
            raise AnswerTooLarge(size)
        pieces.append(piece)
    return b"".join(pieces)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    data: dict[str, Any],
    headers: dict[str, str],
    default_type: str = "application/json",
    *,
    max_bytes: int | None = None,
) -> UpstreamReply:
    """POST `data`; the whole answer with its content type (`default_type` when unsaid)."""
    async with stream_json(client, url, data, headers) as response:
        body = await read_body(response, max_bytes)
    return UpstreamReply(
        response.status_code,
        body,
        response.headers.get("content-type", default_type),
        parse_retry_after(response.headers.get("retry-after")),
    )


def stream_json(
    client: httpx.AsyncClient, url: str, data: dict[str, Any], headers: dict[str, str]
) -> AbstractAsyncContextManager[httpx.Response]:
    """POST `data` and hand over the response as soon as its headers arrive."""
    request = client.build_request("POST", url, content=orjson.dumps(data), headers=headers)
    return Streamed(client, request)


class Streamed(AbstractAsyncContextManager[httpx.Response]):
    """`client.send(stream=True)` as a context manager that always closes the response."""

    def __init__(self, client: httpx.AsyncClient, request: httpx.Request) -> None:
        self.client = client
        self.request = request
        self.response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        self.response = await self.client.send(self.request, stream=True)
        return self.response

    async def __aexit__(self, *exc: object) -> None:
        if self.response is not None:
            await self.response.aclose()
