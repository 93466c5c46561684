"""Reading a `text/event-stream` line by line into events, for both clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import StreamError
from .protocol import decode

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event: its `event:` name (None for plain data) and its data."""

    event: str | None
    data: Any
    """JSON-decoded when it is JSON, else the text."""


class EventDecoder:
    """Feed it the stream's lines; it hands back each complete event.

    `data: [DONE]` sets `done` (the stream is over); an `event: error` raises StreamError.
    """

    def __init__(self, task_id: str | None) -> None:
        self.task_id = task_id
        self.done = False
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> StreamEvent | None:
        """The event this line completes (a blank line ends one), if any."""
        if not line:
            return self.flush()
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value
        return None

    def flush(self) -> StreamEvent | None:
        """The event under way, if any (also at the end of the stream)."""
        name, data = self._name, self._data
        self._name, self._data = None, []
        if not data and name is None:
            return None
        text = "\n".join(data)
        if text == DONE:
            self.done = True
            return None
        event = StreamEvent(name, decode(text))
        if name == "error":
            raise StreamError(
                f"the stream ended with an error: {_message(event.data)}",
                kind=_kind(event.data),
                body=event.data,
                task_id=self.task_id,
            )
        return event


def _error_of(data: Any) -> Any:
    return data.get("error", data) if isinstance(data, dict) else data


def _message(data: Any) -> str:
    error = _error_of(data)
    return str(error.get("message", error) if isinstance(error, dict) else error)


def _kind(data: Any) -> str:
    error = _error_of(data)
    return str(error.get("type", "error")) if isinstance(error, dict) else "error"
