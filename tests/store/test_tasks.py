"""The task lifecycle: submit, get, start, finish, cancel, requeue, each one atomic."""

from __future__ import annotations

import orjson
import pytest
from redis.asyncio import Redis

from queue_service.errors import QueueFull
from queue_service.models import ResponseMode, Status
from queue_service.store import Keys, Lane, Outcome, Store, StreamEntry, StreamReader
from queue_service.store.events import Done, decode, encode_chunk
from queue_service.store.keys import CONSUMER_GROUP
from queue_service.store.ledger import CALLBACK_SETTLE_MS
from queue_service.store.statistics import field
from queue_service.timing import now_ms

from . import ALICE, listening, put_request, submit

OK = Outcome(Status.SUCCEEDED, 200, b'{"answer":42}')


async def take(store: Store, reader: StreamReader, queue: str = "q", level: int = 0) -> str:
    """Read the next entry as a worker and start its task; returns the entry id."""
    (entry,) = await reader.read(Lane(queue, level, ALICE), 1)
    assert await store.tasks.start(queue, entry.task_id, reader.consumer) is not None
    return entry.entry_id


async def pending(redis: Redis, stream: str) -> int:
    return int((await redis.xpending(stream, CONSUMER_GROUP))["pending"])


# -- submit, load, get ---------------------------------------------------------------------
async def test_prepare_gives_an_id_and_channel_but_queues_nothing(
    store: Store, redis: Redis, prefix: str
) -> None:
    submission = await store.tasks.prepare(put_request("q", ResponseMode.STREAMING), "t", 30)
    assert submission.text_id.startswith(f"TASK-{await store.queues.id('q')}-0-S-")
    assert submission.channel == Keys(prefix).task_channel("q", submission.text_id)
    assert await store.tasks.load("q", submission.text_id) is None
    assert await redis.xlen(Keys(prefix).stream("q", 0, ALICE)) == 0


async def test_submit_writes_a_record_and_one_stream_entry(
    store: Store, redis: Redis, prefix: str
) -> None:
    before = now_ms()
    job = put_request("q", ResponseMode.CALLBACK, level=1, data={"prompt": "hello"})
    submission = await submit(store, job, tenant="alice", timeout_s=30)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert (record.task_id, record.queue, record.level, record.mode) == (
        submission.text_id,
        "q",
        1,
        ResponseMode.CALLBACK,
    )
    assert (record.endpoint, orjson.loads(record.data)) == ("chat/completions", {"prompt": "hello"})
    assert (record.callback_url, record.tenant) == ("http://127.0.0.1:9/callback", "alice")
    assert (record.status, record.attempts, record.outcome) == (Status.QUEUED, 0, None)
    assert before <= record.created_at <= now_ms()
    assert record.deadline == record.created_at + 30_000
    entries = await redis.xrange(Keys(prefix).stream("q", 1, ALICE))
    assert [(entry_id.decode(), fields) for entry_id, fields in entries] == [
        (record.entry, {b"task": submission.text_id.encode()})
    ]
    ttl = await redis.pttl(Keys(prefix).task("q", submission.text_id))
    assert 60_000 < ttl <= 90_000  # the timeout plus the retention


async def test_get_returns_the_tenants_own_task_only(store: Store) -> None:
    submission = await submit(store, tenant="alice")
    record = await store.tasks.get(submission.text_id, "alice")
    assert record is not None
    assert record.task_id == submission.text_id
    assert await store.tasks.get(submission.text_id, "bob") is None


@pytest.mark.parametrize(
    "text_id",
    [
        "",
        "junk",
        "TASK-",
        "TASK-1-0-B-260101000000-0001-000001x",
        "TASK-999-0-B-260101000000-0001-000001",
    ],
)
async def test_get_refuses_junk_and_unknown_ids(store: Store, text_id: str) -> None:
    await submit(store)
    assert await store.tasks.get(text_id, "alice") is None


async def test_get_of_a_well_formed_id_that_was_never_submitted(store: Store) -> None:
    submission = await store.tasks.prepare(put_request(), "alice", 30)
    assert await store.tasks.get(submission.text_id, "alice") is None


async def test_a_full_lane_raises_queue_full_and_stores_nothing(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    store = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60, max_waiting=2)
    for _ in range(2):
        await submit(store)
    refused = await store.tasks.prepare(put_request(), "alice", 30)
    with pytest.raises(QueueFull) as raised:
        await store.tasks.submit(refused)
    assert raised.value.retry_after > 0
    assert await redis.exists(Keys(prefix).task("q", refused.text_id)) == 0
    assert await redis.xlen(Keys(prefix).stream("q", 0, ALICE)) == 2
    assert await store.statistics.counts("q") == {field("put", level=0, mode="blocking"): 2}
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))  # the other level
    await submit(store, tenant="bob")  # another tenant's lane: a bound of its own


async def test_jobs_in_flight_do_not_count_as_waiting(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    store = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60, max_waiting=1)
    reader = store.stream_reader("w", visibility_timeout=60)
    try:
        await submit(store)
        await take(store, reader)
        await submit(store)
        with pytest.raises(QueueFull):
            await submit(store)
    finally:
        await reader.aclose()


async def test_the_sealed_upstream_key_is_kept_while_the_job_runs(store: Store) -> None:
    submission = await submit(store, sealed_upstream_key=b"sealed\x00key")
    assert await store.tasks.sealed_upstream_key("q", submission.text_id) == b"sealed\x00key"
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert b"sealed" not in orjson.dumps(record.public_view())


# -- start ---------------------------------------------------------------------------------
async def test_start_marks_a_queued_task_running_and_returns_it(
    store: Store, reader: StreamReader
) -> None:
    submission = await submit(store)
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    before = now_ms()
    started = await store.tasks.start("q", entry.task_id, "worker-a")
    assert started is not None
    assert (started.task_id, started.status, started.attempts) == (
        submission.text_id,
        Status.RUNNING,
        1,
    )
    assert started.started_at is not None
    assert before <= started.started_at <= now_ms()
    assert started.entry == entry.entry_id
    assert await store.tasks.load("q", submission.text_id) == started


async def test_start_again_counts_another_attempt(store: Store, reader: StreamReader) -> None:
    """A job taken over from a silent worker is started a second time."""
    submission = await submit(store)
    await take(store, reader)
    again = await store.tasks.start("q", submission.text_id, "worker-b")
    assert again is not None
    assert (again.status, again.attempts) == (Status.RUNNING, 2)


async def test_start_leaves_a_finished_task_as_it_is(store: Store, reader: StreamReader) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert await store.tasks.finish(record, entry, OK)
    finished = await store.tasks.load("q", submission.text_id)
    assert await store.tasks.start("q", submission.text_id, "worker-b") == finished


async def test_start_leaves_a_task_past_its_deadline_queued(store: Store) -> None:
    submission = await submit(store, timeout_s=0)
    record = await store.tasks.start("q", submission.text_id, "worker-a")
    assert record is not None
    assert (record.status, record.attempts, record.started_at) == (Status.QUEUED, 0, None)
    assert record.deadline <= now_ms()


async def test_start_of_a_task_that_is_gone(store: Store) -> None:
    submission = await store.tasks.prepare(put_request(), "alice", 30)
    assert await store.tasks.start("q", submission.text_id, "worker-a") is None


# -- finish --------------------------------------------------------------------------------
async def test_finish_stores_the_outcome_acks_the_entry_and_tells_the_waiter(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store, sealed_upstream_key=b"sealed")
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert await pending(redis, stream) == 1
    async with listening(redis, submission.channel) as next_message:
        assert await store.tasks.finish(record, entry, OK)
        channel, payload = await next_message()
    assert channel == submission.channel
    assert decode(payload) == Done(Status.SUCCEEDED, 200, "application/json", OK.body)
    assert await pending(redis, stream) == 0
    assert await redis.xlen(stream) == 0
    finished = await store.tasks.load("q", submission.text_id)
    assert finished is not None
    assert (finished.status, finished.outcome) == (Status.SUCCEEDED, OK)
    assert finished.finished_at is not None
    assert finished.finished_at >= record.created_at
    assert await store.tasks.sealed_upstream_key("q", submission.text_id) is None
    assert 0 < await redis.pttl(Keys(prefix).task("q", submission.text_id)) <= 60_000


async def test_the_first_outcome_wins(store: Store, reader: StreamReader) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert await store.tasks.finish(record, entry, OK)
    late = Outcome.error(Status.TIMEOUT, 504, "too late", "timeout")
    assert not await store.tasks.finish(record, entry, late)
    finished = await store.tasks.load("q", submission.text_id)
    assert finished is not None
    assert finished.outcome == OK
    counts = await store.statistics.counts("q")
    assert counts[field("finished", status="succeeded", level=0, mode="blocking")] == 1
    assert field("finished", status="timeout", level=0, mode="blocking") not in counts


async def test_a_finished_callback_job_is_due_for_its_callback(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    entry = await take(store, reader, level=1)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    async with listening(redis, submission.channel) as next_message:
        assert await store.tasks.finish(record, entry, OK)
        _, payload = await next_message()
    assert decode(payload) == Done(Status.SUCCEEDED, 200, "application/json", b"")  # no body
    finished = await store.tasks.load("q", submission.text_id)
    assert finished is not None
    assert finished.finished_at is not None
    due = await redis.zscore(Keys(prefix).callbacks_due("q"), submission.text_id)
    assert due == finished.finished_at + CALLBACK_SETTLE_MS


async def test_a_finished_blocking_job_owes_no_callback(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert await store.tasks.finish(record, entry, OK)
    assert await redis.zcard(Keys(prefix).callbacks_due("q")) == 0


async def test_finish_counts_the_job(store: Store, reader: StreamReader) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.start("q", submission.text_id, "worker-a")  # has started_at
    assert record is not None
    failed = Outcome.error(Status.FAILED, 502, "upstream down", "upstream_error")
    assert await store.tasks.finish(record, entry, failed)
    counts = await store.statistics.counts("q")
    labels = {"level": 0, "mode": "blocking"}
    assert counts[field("put", **labels)] == 1
    assert counts[field("finished", status="failed", **labels)] == 1
    assert counts[field("upstream_status", code=502)] == 1
    for histogram in ("end_to_end_seconds", "pickup_seconds", "run_seconds"):
        assert counts[field(f"{histogram}_count", **labels)] == 1
        assert counts[field(f"{histogram}_sum", **labels)] >= 0


async def test_finish_of_an_expired_task_only_acks(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    await redis.delete(Keys(prefix).task("q", submission.text_id))
    assert not await store.tasks.finish(record, entry, OK)
    assert await pending(redis, Keys(prefix).stream("q", 0, ALICE)) == 0
    assert await redis.exists(Keys(prefix).task("q", submission.text_id)) == 0


async def test_ack_removes_an_entry(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    await submit(store)
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    await store.tasks.ack(entry)
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert (await pending(redis, stream), await redis.xlen(stream)) == (0, 0)


async def test_publish_reaches_the_tasks_channel(store: Store, redis: Redis) -> None:
    submission = await store.tasks.prepare(put_request(), "alice", 30)
    async with listening(redis, submission.channel) as next_message:
        await store.tasks.publish("q", submission.text_id, encode_chunk(b"data: 1\n\n"))
        assert await next_message() == (submission.channel, b"cdata: 1\n\n")


# -- cancel --------------------------------------------------------------------------------
async def test_cancel_of_a_queued_task(store: Store, redis: Redis, prefix: str) -> None:
    submission = await submit(store, sealed_upstream_key=b"sealed")
    keys = Keys(prefix)
    async with listening(redis, submission.channel, keys.cancel_channel) as next_message:
        result = await store.tasks.cancel(submission.text_id, "alice", reason="changed my mind")
        messages = dict([await next_message(), await next_message()])
    assert result is not None
    assert result.previous is Status.QUEUED
    assert result.record.status is Status.CANCELLED
    assert result.record.outcome is not None
    assert result.record.outcome.status_code == 499
    assert result.record.outcome.body_value() == {
        "error": {"message": "changed my mind", "type": "cancelled"}
    }
    assert result.record.finished_at is not None
    assert await redis.xlen(keys.stream("q", 0, ALICE)) == 0
    done = decode(messages[submission.channel])
    assert isinstance(done, Done)
    assert (done.status, done.status_code, done.body) == (
        Status.CANCELLED,
        499,
        result.record.outcome.body,
    )
    assert messages[keys.cancel_channel] == submission.text_id.encode()
    assert await store.tasks.sealed_upstream_key("q", submission.text_id) is None
    assert 0 < await redis.pttl(keys.task("q", submission.text_id)) <= 60_000
    assert await store.tasks.load("q", submission.text_id) == result.record


async def test_cancel_of_a_running_task_leaves_its_entry_to_its_worker(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    result = await store.tasks.cancel(submission.text_id, "alice")
    assert result is not None
    assert (result.previous, result.record.status) == (Status.RUNNING, Status.CANCELLED)
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert await pending(redis, stream) == 1  # the worker stops the job and acks the entry
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert not await store.tasks.finish(record, entry, OK)  # the cancel stays the outcome
    assert (await pending(redis, stream), await redis.xlen(stream)) == (0, 0)
    final = await store.tasks.load("q", submission.text_id)
    assert final is not None
    assert final.status is Status.CANCELLED


async def test_cancel_of_a_finished_task_reports_its_status_unchanged(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert await store.tasks.finish(record, entry, OK)
    finished = await store.tasks.load("q", submission.text_id)
    async with listening(redis, Keys(prefix).cancel_channel) as next_message:
        result = await store.tasks.cancel(submission.text_id, "alice")
        await redis.publish(Keys(prefix).cancel_channel, b"marker")
        # the marker comes first: no task id was announced before it
        assert await next_message() == (Keys(prefix).cancel_channel, b"marker")
    assert result is not None
    assert (result.previous, result.record) == (Status.SUCCEEDED, finished)
    assert await store.tasks.load("q", submission.text_id) == finished


async def test_cancel_of_another_tenants_or_an_unknown_task(store: Store) -> None:
    submission = await submit(store, tenant="alice")
    assert await store.tasks.cancel(submission.text_id, "bob") is None
    assert await store.tasks.cancel("TASK-junk", "alice") is None
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert record.status is Status.QUEUED


# -- requeue -------------------------------------------------------------------------------
async def test_requeue_puts_an_unfinished_task_back_as_a_new_entry(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    assert await store.tasks.requeue(StreamEntry("q", 0, entry, submission.text_id, tenant=ALICE))
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert await pending(redis, stream) == 0
    ((new_entry, fields),) = await redis.xrange(stream)
    assert new_entry.decode() != entry
    assert fields == {b"task": submission.text_id.encode()}
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert (record.status, record.entry) == (Status.QUEUED, new_entry.decode())
    (again,) = await reader.read(Lane("q", 0, ALICE), 1)
    assert (again.entry_id, again.task_id) == (new_entry.decode(), submission.text_id)


async def test_requeue_is_refused_for_a_finished_task(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    submission = await submit(store)
    entry = await take(store, reader)
    assert await store.tasks.cancel(submission.text_id, "alice") is not None
    assert not await store.tasks.requeue(
        StreamEntry("q", 0, entry, submission.text_id, tenant=ALICE)
    )
    stream = Keys(prefix).stream("q", 0, ALICE)
    assert (await pending(redis, stream), await redis.xlen(stream)) == (0, 0)
    record = await store.tasks.load("q", submission.text_id)
    assert record is not None
    assert record.status is Status.CANCELLED
