"""What a worker publishes on a task's channel, and how the API reads it back.

Each message is one byte of kind and a payload, so relayed SSE events cross Redis as the very
bytes the upstream sent (no re-encoding on the hot path):

- `h` head: `{"status_code", "content_type"}`: the upstream accepted a streamed request;
- `c` chunk: one raw SSE event (`event: ...\\ndata: ...\\n\\n`), to relay as it is;
- `d` done: `{"status", "status_code", "content_type"}`, a newline, then the body when the
  waiting client needs it (blocking mode); otherwise nothing follows the newline. A body
  over `INLINE_RESULT_BYTES` is not published (`"stored": true`): the waiter reads it from
  the task record, so one large answer never strains the pub/sub connection all waiters
  share (Redis cuts a subscriber's connection past its pubsub output-buffer limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from queue_service.models import Status


@dataclass(frozen=True, slots=True)
class Head:
    status_code: int
    content_type: str


@dataclass(frozen=True, slots=True)
class Chunk:
    raw: bytes


@dataclass(frozen=True, slots=True)
class Done:
    status: Status
    status_code: int
    content_type: str
    body: bytes
    stored: bool = False
    """The body was too large to publish: read it from the task record."""


TaskEvent = Head | Chunk | Done


def encode_head(status_code: int, content_type: str) -> bytes:
    return b"h" + orjson.dumps({"status_code": status_code, "content_type": content_type})


def encode_chunk(raw: bytes) -> bytes:
    return b"c" + raw


def encode_done(
    status: Status, status_code: int, content_type: str, body: bytes = b"", stored: bool = False
) -> bytes:
    header = {"status": status.value, "status_code": status_code, "content_type": content_type}
    if stored:
        header["stored"] = True
    return b"d" + orjson.dumps(header) + b"\n" + body


def is_chunk(message: bytes) -> bool:
    return message[:1] == b"c"


def decode(message: bytes) -> TaskEvent:
    kind, payload = message[:1], message[1:]
    if kind == b"c":
        return Chunk(payload)
    if kind == b"h":
        head = orjson.loads(payload)
        return Head(head["status_code"], head["content_type"])
    if kind == b"d":
        header, _, body = payload.partition(b"\n")
        done = orjson.loads(header)
        status, code, kind = Status(done["status"]), done["status_code"], done["content_type"]
        return Done(status, code, kind, body, done.get("stored", False))
    raise ValueError(f"unknown task event kind {kind!r}")
