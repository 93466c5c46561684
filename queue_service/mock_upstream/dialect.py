"""What differs between the upstream APIs the mock speaks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from starlette.responses import Response

from .reply import Reply
from .streaming import Frame


class Dialect(Protocol):
    stream_error: bytes
    """The in-band error event of a failing stream."""

    def new_id(self) -> str: ...

    def authorized(self, headers: Mapping[str, str], api_key: str) -> bool: ...

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response: ...

    def wants_reasoning(self, body: dict[str, Any], model: str) -> bool: ...

    def prompt_tokens(self, body: dict[str, Any]) -> int: ...

    def completion_body(self, reply: Reply) -> bytes: ...

    def stream_frames(self, reply: Reply, body: dict[str, Any]) -> Iterator[Frame]: ...
