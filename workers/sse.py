"""Splitting an upstream's `text/event-stream` body into events, keeping each one's raw bytes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
"""A line's end, then an empty line: each may end in CRLF, LF or CR alone (the SSE rule)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    raw: bytes
    """The event exactly as received, blank line included: what gets relayed."""
    event: str | None
    data: bytes
    """The `data:` lines joined by newlines (the SSE rule)."""


def parse_event(raw: bytes) -> SSEEvent:
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode(errors="replace")
    return SSEEvent(raw, name, b"\n".join(data))


class EventTooLarge(Exception):
    """An event went past the size a stream may take without ending."""


def _event_end(buffer: bytearray, start: int) -> int | None:
    """Where the first complete event ends (its blank line included), if it is complete;
    the search starts at `start` (what lies before was searched already).

    A CR as the buffer's last byte may be the first half of a CRLF: wait for the next byte."""
    match = _EVENT_END.search(buffer, start)
    if match is None or (match.end() == len(buffer) and buffer.endswith(b"\r")):
        return None
    return match.end()


async def sse_events(
    chunks: AsyncIterator[bytes], max_event_bytes: int | None = None
) -> AsyncIterator[SSEEvent]:
    """Yield each complete event as soon as its last byte arrives (EventTooLarge when one
    grows past `max_event_bytes` unfinished). Each byte is searched about once: an upstream
    that never ends its event costs linear time, not quadratic."""
    buffer = bytearray()
    searched = 0
    async for chunk in chunks:
        buffer += chunk
        while (end := _event_end(buffer, searched)) is not None:
            raw = bytes(buffer[:end])
            del buffer[:end]
            searched = 0
            if raw.strip():
                yield parse_event(raw)
        searched = max(len(buffer) - 4, 0)  # an event's end may straddle the next chunk
        if max_event_bytes is not None and len(buffer) > max_event_bytes:
            raise EventTooLarge(f"an event went past {max_event_bytes} bytes without ending")
    if buffer.strip():  # a last event the upstream did not terminate
        yield parse_event(bytes(buffer))
