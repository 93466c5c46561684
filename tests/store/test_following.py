"""Tasks followed upstream: handed over with their entry acknowledged, claimed with a lease,
updated while running, taken off the set by finish, cancel and timeout, dropped, released;
never requeued once handed over."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from queue_service.models import ResponseMode, Status
from queue_service.store import Keys, Lane, Outcome, Store, StreamEntry, StreamReader, TaskRecord
from queue_service.store.following import MISSES_FIELD, READ_ERROR_FIELD
from queue_service.store.keys import CONSUMER_GROUP
from queue_service.timing import now_ms

from . import ALICE, listening, put_request, submit

MJ = "/mj/submit/imagine"


async def started(
    store: Store, reader: StreamReader, mode: ResponseMode
) -> tuple[TaskRecord, StreamEntry]:
    """A task on queue `q` read by a worker and started (its submit is under way), and the
    stream entry the worker read."""
    await submit(store, put_request("q", mode, endpoint=MJ, data={"prompt": "cat"}))
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    record = await store.tasks.start("q", entry.task_id, reader.consumer)
    assert record is not None
    return record, entry


async def running(store: Store, reader: StreamReader, mode: ResponseMode) -> TaskRecord:
    """A task on queue `q` read by a worker and started (its submit is under way)."""
    record, _ = await started(store, reader, mode)
    return record


async def followed(redis: Redis, prefix: str) -> dict[str, float]:
    pairs = await redis.zrange(Keys(prefix).followed("q"), 0, -1, withscores=True)
    return {task_id.decode(): score for task_id, score in pairs}


async def test_hand_over_acks_the_entry_stores_the_upstream_id_and_publishes(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.STREAMING)
    channel = Keys(prefix).task_channel("q", record.task_id)
    async with listening(redis, channel) as next_message:
        fields = {"upstream_task_id": "1320098173412546", "progress_at": 5}
        assert await store.following.hand_over(record, record.entry, fields, 12345, b"head")
        assert await next_message() == (channel, b"head")
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert (await redis.xpending(stream, CONSUMER_GROUP))["pending"] == 0
    assert await redis.xlen(stream) == 0
    assert await followed(redis, prefix) == {record.task_id: 12345}
    assert await store.following.queues() == ["q"]
    stored = await store.tasks.load("q", record.task_id)
    assert stored is not None
    assert (stored.status, stored.upstream_task_id, stored.progress_at) == (
        Status.RUNNING,
        "1320098173412546",
        5,
    )
    view = stored.public_view()
    assert (view["upstream_task_id"], view["progress"], view["upstream_task"]) == (
        "1320098173412546",
        None,
        None,
    )


async def test_claims_take_due_tasks_once_until_their_lease_ends(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    now = now_ms()
    await store.following.hand_over(record, record.entry, {"upstream_task_id": "u1"}, now, b"")
    assert await store.following.claim("q", now - 1, 1000, 10) == []  # not due yet
    (claimed,) = await store.following.claim("q", now, 1000, 10)
    assert claimed.record.task_id == record.task_id
    assert (claimed.misses, claimed.read_error) == (0, "")
    assert await store.following.claim("q", now + 999, 1000, 10) == []  # leased
    (again,) = await store.following.claim("q", now + 1000, 1000, 10)  # the lease ended
    assert again.record.upstream_task_id == "u1"


async def test_claims_carry_the_followers_notes(store: Store, reader: StreamReader) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    await store.following.hand_over(record, record.entry, {"upstream_task_id": "u1"}, 1, b"")
    notes = {MISSES_FIELD: 3, READ_ERROR_FIELD: "/mj/task/list-by-condition answered 503"}
    assert await store.following.update(record, notes, 1)
    (claimed,) = await store.following.claim("q", now_ms(), 1000, 10)
    assert (claimed.misses, claimed.read_error) == (3, notes[READ_ERROR_FIELD])


async def test_drop_and_release(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    first = await running(store, reader, ResponseMode.CALLBACK)
    second = await running(store, reader, ResponseMode.CALLBACK)
    for record in (first, second):
        await store.following.hand_over(record, record.entry, {"upstream_task_id": "u"}, 1, b"")
    now = now_ms()
    assert len(await store.following.claim("q", now, 60_000, 10)) == 2
    await store.following.drop(first)
    assert await followed(redis, prefix) == {second.task_id: now + 60_000}
    await store.following.release("q", [first.task_id, second.task_id], now)
    # Released: due now; a task that left the set meanwhile is not put back.
    assert await followed(redis, prefix) == {second.task_id: now}
    await store.following.release("q", [], now)  # nothing claimed: nothing to do


async def test_a_requeue_after_the_hand_over_only_acknowledges(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    """A shutdown's requeue that comes after the hand-over (its entry is gone already) adds
    no fresh entry: the task is followed, a fresh entry would submit it a second time."""
    record, entry = await started(store, reader, ResponseMode.CALLBACK)
    assert await store.following.hand_over(
        record, entry.entry_id, {"upstream_task_id": "u"}, 1, b""
    )
    assert not await store.tasks.requeue(entry)
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert await redis.xlen(stream) == 0
    stored = await store.tasks.load("q", record.task_id)
    assert stored is not None
    assert (stored.status, stored.entry) == (Status.RUNNING, record.entry)
    assert await followed(redis, prefix) == {record.task_id: 1}
    # Before the hand-over, a requeue does hand the job back.
    _, other_entry = await started(store, reader, ResponseMode.CALLBACK)
    assert await store.tasks.requeue(other_entry)
    assert await redis.xlen(stream) == 1


async def test_updates_record_progress_and_stop_once_the_task_ends(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    await store.following.hand_over(record, record.entry, {"upstream_task_id": "u1"}, 1, b"")
    task = orjson.dumps({"id": "u1", "status": "IN_PROGRESS", "progress": "50%"})
    fields = {"upstream_task": task, "progress": "50%"}
    assert await store.following.update(record, fields, 777)
    assert await followed(redis, prefix) == {record.task_id: 777}
    stored = await store.tasks.load("q", record.task_id)
    assert stored is not None
    assert stored.public_view()["progress"] == "50%"
    assert stored.public_view()["upstream_task"]["status"] == "IN_PROGRESS"
    assert await store.tasks.cancel(record.task_id, "alice") is not None
    assert await followed(redis, prefix) == {}  # the cancel took it off
    assert not await store.following.update(record, fields, 888)  # ended: not put back
    assert await followed(redis, prefix) == {}


async def test_finishing_takes_a_task_off_the_followed_set(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    await store.following.hand_over(record, record.entry, {"upstream_task_id": "u1"}, 1, b"")
    done = Outcome(Status.SUCCEEDED, 200, b'{"status":"SUCCESS"}')
    assert await store.tasks.finish(record, record.entry, done)
    assert await followed(redis, prefix) == {}


async def test_claiming_drops_ids_whose_record_is_gone(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    await store.following.hand_over(record, record.entry, {"upstream_task_id": "u1"}, 1, b"")
    await redis.delete(Keys(prefix).task("q", record.task_id))
    assert await store.following.claim("q", now_ms(), 1000, 10) == []
    assert await followed(redis, prefix) == {}


async def test_a_task_handed_over_after_it_was_cancelled_is_not_followed(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    record = await running(store, reader, ResponseMode.CALLBACK)
    await store.tasks.cancel(record.task_id, "alice")
    assert not await store.following.hand_over(
        record, record.entry, {"upstream_task_id": "u"}, 1, b""
    )
    assert await followed(redis, prefix) == {}
    assert (await redis.xpending(Keys(prefix).stream("q", 0, ALICE), CONSUMER_GROUP))[
        "pending"
    ] == 0
