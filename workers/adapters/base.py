"""What an endpoint adapter is: the code that speaks one upstream protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx


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


class Adapter(Protocol):
    endpoint: str

    async def call(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> UpstreamReply:
        """Send one job's `data` to the upstream and return its complete answer."""
        ...
