"""What an endpoint adapter is: the code that speaks one upstream protocol."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..sse import SSEEvent


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where jobs go: base URL (the job's endpoint path is appended) and credentials."""

    base_url: str
    api_key: str | None = None

    def url(self, endpoint: str) -> str:
        return self.base_url.rstrip("/") + endpoint


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """The upstream's answer to one job: status, body bytes and content type."""

    status_code: int
    body: bytes
    content_type: str
    retry_after: float | None = None
    """Seconds the upstream asked to wait before trying again (its `Retry-After`)."""


class StreamAssembler(Protocol):
    """Builds, from a stream's events, the one response the non-stream API would give."""

    def feed(self, event: SSEEvent) -> None: ...

    def error(self) -> Any | None:
        """The in-band error the stream carried, if any."""
        ...

    def result(self) -> bytes: ...


class Adapter(Protocol):
    endpoint: str

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        """Send one job's `data` to the upstream and return its complete answer
        (`AnswerTooLarge` past `max_bytes`, checked while reading)."""
        ...

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """Open a streamed request (`data` asks for a stream); the body is read by the caller."""
        ...

    def assembler(self) -> StreamAssembler: ...
