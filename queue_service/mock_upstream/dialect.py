"""What differs between the upstream APIs the mock speaks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol

from starlette.responses import Response

from .controls import MockControls
from .reply import Reply
from .streaming import Frame


class Api(Protocol):
    """What every mocked endpoint does: ids, auth, errors and checking a request."""

    def new_id(self) -> str: ...

    def authorized(self, headers: Mapping[str, str], api_key: str) -> bool: ...

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response: ...

    def check(self, body: dict[str, Any], controls: MockControls) -> str | None:
        """Why the request is invalid (answered 400), or None."""
        ...


class Dialect(Api, Protocol):
    """A generative API: a model reply rendered whole or as a stream of events."""

    stream_error: bytes
    """The in-band error event of a failing stream."""

    def wants_reasoning(self, body: dict[str, Any], model: str) -> bool: ...

    def prompt_tokens(self, body: dict[str, Any]) -> int: ...

    def user_text(self, body: dict[str, Any]) -> str:
        """The text the default reply echoes."""
        ...

    def completion_body(self, reply: Reply) -> bytes: ...

    def stream_frames(self, reply: Reply, body: dict[str, Any]) -> Iterator[Frame]: ...


class Call(NamedTuple):
    """An admitted request: valid, authorized, not asked to fail."""

    body: dict[str, Any]
    controls: MockControls
    response_id: str
    model: str
    """The body's `model`, else the mock's default."""
    base_url: str
    """The mock's own URL (ends with `/`), for answers that link back to it."""


class Answer(NamedTuple):
    body: bytes
    content_type: str


class OneShotApi(Api, Protocol):
    """An API answering in one piece, computed from the request (embeddings, images...)."""

    path: str
    """Where it is served."""

    def answer(self, call: Call) -> Answer: ...


def conversation_problem(body: dict[str, Any], controls: MockControls) -> str | None:
    """`check` for the chat APIs (a `messages` list; a mocked tool call needs tools)."""
    if not isinstance(body.get("messages"), list):
        return "The body must be a JSON object with `messages`."
    if controls.tool_call is not None and not body.get("tools"):
        return "mock.tool_call needs `tools` in the request."
    return None
