"""The SSE parser: events out of arbitrary chunks, each with its raw bytes kept exactly."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterable

import pytest

from workers.sse import EventTooLarge, SSEEvent, parse_event, sse_events

# One stream with a bit of everything: a comment, `event:` names, an id, multi-line data,
# CRLF and LF line endings, a data field without a space, an empty data field.
EVENTS = [
    b": keep-alive\n\n",
    b'event: message_start\r\ndata: {"type": "message_start"}\r\n\r\n',
    b"id: 7\nevent: delta\ndata: first line\ndata: second line\n\n",
    b": a comment inside\ndata:no space\n\n",
    b"data\n\n",
    b"data: [DONE]\n\n",
]
STREAM = b"".join(EVENTS)


async def chunks(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def parse(pieces: Iterable[bytes]) -> list[SSEEvent]:
    return [event async for event in sse_events(chunks(pieces))]


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def test_a_whole_stream_gives_each_event_with_its_exact_bytes() -> None:
    events = await parse([STREAM])
    assert [event.raw for event in events] == EVENTS
    assert [(event.event, event.data) for event in events] == [
        (None, b""),
        ("message_start", b'{"type": "message_start"}'),
        ("delta", b"first line\nsecond line"),
        (None, b"no space"),
        (None, b""),
        (None, b"[DONE]"),
    ]


async def test_byte_by_byte_gives_the_same_events() -> None:
    one_byte_each = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert await parse(one_byte_each) == await parse([STREAM])


async def test_every_single_cut_gives_the_same_events() -> None:
    whole = await parse([STREAM])
    for cut in range(1, len(STREAM)):
        assert await parse(split(STREAM, [cut])) == whole, f"cut at {cut}"


async def test_random_chunkings_give_the_same_events() -> None:
    whole = await parse([STREAM])
    rng = random.Random(20240611)
    for _ in range(300):
        cuts = rng.sample(range(1, len(STREAM)), rng.randint(1, 12))
        pieces = split(STREAM, cuts)
        assert await parse(pieces) == whole, f"pieces {pieces!r}"


async def test_crlf_line_endings() -> None:
    stream = b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n"
    events = await parse([stream])
    assert [(e.event, e.data, e.raw) for e in events] == [
        ("a", b"1\n2", b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n"),
        (None, b"3", b"data: 3\r\n\r\n"),
    ]


async def test_cr_line_endings() -> None:
    events = await parse([b"event: a\rdata: 1\r\rdata: 2\r\r"])
    assert [(e.event, e.data, e.raw) for e in events] == [
        ("a", b"1", b"event: a\rdata: 1\r\r"),
        (None, b"2", b"data: 2\r\r"),
    ]


async def test_only_one_space_after_the_colon_is_dropped() -> None:
    (event,) = await parse([b"data:  two spaces \n\n"])
    assert event.data == b" two spaces "


async def test_comment_lines_are_no_data() -> None:
    (event,) = await parse([b": ping\ndata: x\n: pong\n\n"])
    assert event.data == b"x"
    assert event.raw == b": ping\ndata: x\n: pong\n\n"


async def test_a_last_event_without_blank_line_still_comes_out() -> None:
    events = await parse([b"data: 1\n\n", b"event: end\n", b"data: 2"])
    assert [(e.event, e.data, e.raw) for e in events] == [
        (None, b"1", b"data: 1\n\n"),
        ("end", b"2", b"event: end\ndata: 2"),
    ]


async def test_blank_lines_between_events_make_no_event() -> None:
    events = await parse([b"\n\ndata: 1\n\n\n\n", b"\r\n\r\n", b"data: 2\n\n\n"])
    assert [e.data for e in events] == [b"1", b"2"]


async def test_an_event_comes_out_as_soon_as_its_last_byte_arrives() -> None:
    """The relay must not wait for the next chunk (or the end) to pass an event on."""
    feed: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def upstream() -> AsyncIterator[bytes]:
        while (piece := await feed.get()) is not None:
            yield piece

    events = sse_events(upstream())
    await feed.put(b"data: 1\n")
    await feed.put(b"\ndata: 2\n")
    first = await asyncio.wait_for(anext(events), 5)
    assert first.data == b"1"
    await feed.put(b"\n")
    second = await asyncio.wait_for(anext(events), 5)
    assert second.data == b"2"
    await feed.put(None)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)


def test_parse_event_keeps_the_last_event_name() -> None:
    event = parse_event(b"event: a\nevent: b\ndata: x\n\n")
    assert (event.event, event.data) == ("b", b"x")


async def test_line_endings_mixed_within_an_event() -> None:
    events = await parse([b"data: 1\n\r\ndata: 2\n\n"])
    assert [e.data for e in events] == [b"1", b"2"]


async def test_an_event_that_never_ends_stops_at_the_limit() -> None:
    pieces = [b"data: " + b"x" * 1000 for _ in range(50)]  # 50 KB, no blank line
    with pytest.raises(EventTooLarge, match="20000 bytes"):
        async for _ in sse_events(chunks(pieces), max_event_bytes=20_000):
            pass
    events = [event async for event in sse_events(chunks([b"data: a\n\n"]), 20_000)]
    assert [event.data for event in events] == [b"a"]  # a small one goes through
