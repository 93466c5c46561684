"""Task events on pub/sub: head, chunk and done encode and decode back unchanged."""

from __future__ import annotations

import pytest

from queue_service.models import Status
from queue_service.store.events import (
    Chunk,
    Done,
    Head,
    decode,
    encode_chunk,
    encode_done,
    encode_head,
)


def test_head_round_trips() -> None:
    assert decode(encode_head(200, "text/event-stream")) == Head(200, "text/event-stream")


@pytest.mark.parametrize(
    "raw",
    [
        b'event: message\ndata: {"delta":"hi"}\n\n',
        b"data: [DONE]\n\n",
        b"",
        b"d\nh\nc\x00\xff binary \r\n",  # starts with another kind's letter, has newlines
    ],
)
def test_a_chunk_carries_its_bytes_unchanged(raw: bytes) -> None:
    assert encode_chunk(raw) == b"c" + raw
    assert decode(encode_chunk(raw)) == Chunk(raw)


def test_done_with_a_body_keeps_the_body_byte_for_byte() -> None:
    body = b'{"choices":[{"text":"a\nb"}]}\n\n\x00'
    encoded = encode_done(Status.SUCCEEDED, 200, "application/json", body)
    assert decode(encoded) == Done(Status.SUCCEEDED, 200, "application/json", body)


def test_done_without_a_body() -> None:
    assert decode(encode_done(Status.CANCELLED, 499, "application/json")) == Done(
        Status.CANCELLED, 499, "application/json", b""
    )


@pytest.mark.parametrize("status", list(Status))
def test_done_carries_every_status(status: Status) -> None:
    event = decode(encode_done(status, 418, "text/plain", b"x"))
    assert isinstance(event, Done)
    assert event.status is status


@pytest.mark.parametrize("message", [b"x{}", b"", b"H{}", b"\x00"])
def test_an_unknown_kind_raises(message: bytes) -> None:
    with pytest.raises(ValueError, match="unknown task event kind"):
        decode(message)
