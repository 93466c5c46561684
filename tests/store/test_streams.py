"""A worker's reads of the lanes: entries, waits for work woken by a put or interrupted at
once, touching entries alive, and taking over those of a silent worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from queue_service.models import ResponseMode
from queue_service.store import Keys, Lane, Store, StreamEntry, StreamReader
from queue_service.store.keys import CONSUMER_GROUP, tenant_id
from tests.helpers import eventually

from . import ALICE, put_request, submit

LONG_BLOCK_MS = 20_000
"""Longer than any test may take: a read that returns did not time out."""


VISIBILITY_S = 30


@pytest.fixture
async def other(store: Store) -> AsyncIterator[StreamReader]:
    """A second worker, taking over entries idle for longer than `VISIBILITY_S`."""
    running = store.stream_reader("worker-b", visibility_timeout=VISIBILITY_S)
    yield running
    await running.aclose()


async def blocked(redis: Redis, reader: StreamReader) -> bool:
    """Whether the reader's blocking connection is blocked in a read right now."""
    clients = await redis.client_list()
    return any(
        int(client["id"]) == reader._blocking_client_id and "b" in client["flags"]
        for client in clients
    )


async def idle_ms(redis: Redis, stream: str, entry: StreamEntry) -> int:
    (row,) = await redis.xpending_range(
        stream, CONSUMER_GROUP, min=entry.entry_id, max=entry.entry_id, count=1
    )
    return int(row["time_since_delivered"])


async def make_idle(
    redis: Redis, stream: str, entry: StreamEntry, ms: int = VISIBILITY_S * 1000 + 1
) -> None:
    """Set an entry's idle time, as if its worker had been silent for `ms` (by default,
    past the visibility timeout); its owner and delivery count stay."""
    (row,) = await redis.xpending_range(
        stream, CONSUMER_GROUP, min=entry.entry_id, max=entry.entry_id, count=1
    )
    await redis.xclaim(
        stream, CONSUMER_GROUP, row["consumer"], 0, [entry.entry_id], idle=ms, justid=True
    )


async def test_read_returns_a_lanes_entries_with_queue_level_tenant_and_task_id(
    store: Store, reader: StreamReader
) -> None:
    online = await submit(store, put_request("q"))
    offline = await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    bobs = await submit(store, put_request("q"), tenant="bob")
    mine = await reader.read(Lane("q", 0, tenant_id("alice")), 10)
    assert [(e.queue, e.level, e.task_id, e.deliveries, e.tenant) for e in mine] == [
        ("q", 0, online.text_id, 1, tenant_id("alice"))
    ]
    (theirs,) = await reader.read(Lane("q", 0, tenant_id("bob")), 10)
    assert theirs.task_id == bobs.text_id
    (later,) = await reader.read(Lane("q", 1, tenant_id("alice")), 10)
    assert later.task_id == offline.text_id
    for entry in (*mine, theirs, later):
        record = await store.tasks.load(entry.queue, entry.task_id)
        assert record is not None
        assert record.entry == entry.entry_id
    assert await reader.read(Lane("q", 0, tenant_id("alice")), 10) == []


async def test_read_takes_up_to_count_in_order(store: Store, reader: StreamReader) -> None:
    submitted = [(await submit(store)).text_id for _ in range(3)]
    first = await reader.read(Lane("q", 0, ALICE), 2)
    rest = await reader.read(Lane("q", 0, ALICE), 2)
    assert [entry.task_id for entry in first + rest] == submitted
    assert len(first) == 2


async def test_two_workers_never_get_the_same_entry(
    store: Store, reader: StreamReader, other: StreamReader
) -> None:
    for _ in range(4):
        await submit(store)
    mine = await reader.read(Lane("q", 0, ALICE), 2)
    theirs = await other.read(Lane("q", 0, ALICE), 5)
    assert len(mine) == 2
    assert len(theirs) == 2
    assert not {e.entry_id for e in mine} & {e.entry_id for e in theirs}


async def test_a_wait_for_work_wakes_on_a_put_at_its_levels(
    store: Store, reader: StreamReader, redis: Redis
) -> None:
    waiting = asyncio.create_task(reader.wait_for_work([0, 1], LONG_BLOCK_MS / 1000))
    await eventually(lambda: blocked(redis, reader))
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    await asyncio.wait_for(waiting, 5)


async def test_a_wait_on_the_online_level_is_not_woken_by_offline_work(
    store: Store, reader: StreamReader, redis: Redis
) -> None:
    waiting = asyncio.create_task(reader.wait_for_work([0], LONG_BLOCK_MS / 1000))
    await eventually(lambda: blocked(redis, reader))
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    await submit(store, put_request("q"))
    await asyncio.wait_for(waiting, 5)
    assert await redis.llen(store.keys.wake(1)) == 1  # the offline token waits for a taker


async def test_interrupt_ends_a_wait_at_once(
    store: Store, reader: StreamReader, redis: Redis
) -> None:
    waiting = asyncio.create_task(reader.wait_for_work([0], LONG_BLOCK_MS / 1000))
    await eventually(lambda: blocked(redis, reader))
    await reader.interrupt()
    await asyncio.wait_for(waiting, 5)
    await submit(store)  # the reader still works afterwards
    await asyncio.wait_for(reader.wait_for_work([0], LONG_BLOCK_MS / 1000), 5)


async def test_interrupt_without_a_blocked_read_does_nothing(reader: StreamReader) -> None:
    await reader.interrupt()


async def test_touch_resets_the_idle_time(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).stream("q", 1, ALICE)
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    (entry,) = await reader.read(Lane("q", 1, ALICE), 1)
    await make_idle(redis, stream, entry)
    assert await idle_ms(redis, stream, entry) > VISIBILITY_S * 1000
    await reader.touch([entry])
    assert await idle_ms(redis, stream, entry) < 1_000
    rows = await redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 10)
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [(b"worker-a", 1)]


async def test_touch_of_nothing(reader: StreamReader) -> None:
    await reader.touch([])


async def test_reclaim_takes_entries_idle_past_the_visibility_timeout(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    (lost,) = await reader.read(Lane("q", 0, ALICE), 1)
    quick = store.stream_reader("worker-b", visibility_timeout=0.001)
    try:
        (taken,) = await eventually(lambda: quick.reclaim(Lane("q", 0, ALICE), 10))
    finally:
        await quick.aclose()
    assert taken == StreamEntry(
        "q", 0, lost.entry_id, submission.text_id, deliveries=2, tenant=ALICE
    )
    rows = await redis.xpending_range(
        Keys(prefix).stream("q", 0, ALICE), CONSUMER_GROUP, "-", "+", 10
    )
    assert [row["consumer"] for row in rows] == [b"worker-b"]


async def test_reclaim_leaves_entries_of_live_workers_alone(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    await submit(store)
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    assert await other.reclaim(Lane("q", 0, ALICE), 10) == []
    await make_idle(redis, Keys(prefix).stream("q", 0, ALICE), entry, VISIBILITY_S * 1000 - 1_000)
    assert await other.reclaim(Lane("q", 0, ALICE), 10) == []
    await make_idle(redis, Keys(prefix).stream("q", 0, ALICE), entry)
    (taken,) = await other.reclaim(Lane("q", 0, ALICE), 10)
    assert taken.entry_id == entry.entry_id


async def test_a_touched_entry_is_not_taken_over(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    await submit(store)
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    await make_idle(redis, Keys(prefix).stream("q", 0, ALICE), entry)
    await reader.touch([entry])
    assert await other.reclaim(Lane("q", 0, ALICE), 10) == []


async def test_reclaim_counts_every_delivery(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).stream("q", 0, ALICE)
    await submit(store)
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    await make_idle(redis, stream, entry)
    (first,) = await other.reclaim(Lane("q", 0, ALICE), 10)
    await make_idle(redis, stream, entry)
    (second,) = await other.reclaim(Lane("q", 0, ALICE), 10)
    assert (first.deliveries, second.deliveries) == (2, 3)


async def test_reclaim_takes_at_most_count_oldest_first(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).stream("q", 0, ALICE)
    for _ in range(3):
        await submit(store)
    entries = await reader.read(Lane("q", 0, ALICE), 3)
    for entry in entries:
        await make_idle(redis, stream, entry)
    first = await other.reclaim(Lane("q", 0, ALICE), 2)
    rest = await other.reclaim(Lane("q", 0, ALICE), 2)
    assert [entry.entry_id for entry in first + rest] == [entry.entry_id for entry in entries]
    assert await other.reclaim(Lane("q", 0, ALICE), 2) == []


async def test_reclaim_acks_and_skips_entries_deleted_meanwhile(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).stream("q", 0, ALICE)
    cancelled = await submit(store)
    kept = await submit(store)
    entries = await reader.read(Lane("q", 0, ALICE), 2)  # read, not yet started: still queued
    result = await store.tasks.cancel(cancelled.text_id, "alice")  # deletes its entry
    assert result is not None
    assert result.previous.value == "queued"
    for entry in entries:
        await make_idle(redis, stream, entry)
    (taken,) = await other.reclaim(Lane("q", 0, ALICE), 10)
    assert taken.task_id == kept.text_id
    rows = await redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 10)
    assert [row["message_id"].decode() for row in rows] == [taken.entry_id]


async def test_reclaim_finds_an_idle_entry_behind_many_live_ones(
    store: Store, reader: StreamReader, other: StreamReader, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).stream("q", 0, ALICE)
    for _ in range(21):
        await submit(store)
    *live, lost = await reader.read(Lane("q", 0, ALICE), 21)
    await make_idle(redis, stream, lost)  # its worker died; the others are running
    taken = await other.reclaim(Lane("q", 0, ALICE), 1)  # a worker with one free slot
    assert [entry.entry_id for entry in taken] == [lost.entry_id]
    assert len(live) == 20


async def test_a_worker_serving_some_queues_is_woken_by_their_puts_only(
    store: Store, reader: StreamReader, redis: Redis
) -> None:
    await store.scheduler.serve_only(frozenset({"mine"}))
    mine = frozenset({"mine"})
    waiting = asyncio.create_task(reader.wait_for_work([1], LONG_BLOCK_MS / 1000, mine))
    await eventually(lambda: blocked(redis, reader))
    await submit(store, put_request("theirs", ResponseMode.CALLBACK, level=1))
    assert await redis.llen(store.keys.wake(1)) == 1  # the general token: others' to take
    assert not waiting.done()
    await submit(store, put_request("mine", ResponseMode.CALLBACK, level=1))
    await asyncio.wait_for(waiting, 5)
