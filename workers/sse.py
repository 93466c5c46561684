"""Splitting an upstream's `text/event-stream` body into events, keeping each one's raw bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")


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


def _next_boundary(buffer: bytes) -> tuple[int, int] | None:
    """(end of the first complete event, length of its separator), if there is one."""
    found: tuple[int, int] | None = None
    for separator in _SEPARATORS:
        at = buffer.find(separator)
        if at != -1 and (found is None or at < found[0]):
            found = (at, len(separator))
    return found


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    """Yield each complete event as soon as its last byte arrives."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while (boundary := _next_boundary(buffer)) is not None:
            end = boundary[0] + boundary[1]
            raw, buffer = buffer[:end], buffer[end:]
            if raw.strip():
                yield parse_event(raw)
    if buffer.strip():  # a last event the upstream did not terminate
        yield parse_event(buffer)
