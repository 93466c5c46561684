"""The callback ledger: what stays due, what is overdue, and the dead letters."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from queue_service.models import CallbackState, ResponseMode, Status
from queue_service.store import Keys, Lane, Outcome, Store, StreamReader, TaskRecord
from queue_service.store.ledger import CALLBACK_SETTLE_MS
from queue_service.store.statistics import field
from queue_service.timing import now_ms

from . import ALICE, put_request, submit


@pytest.fixture
async def finished(store: Store, reader: StreamReader) -> TaskRecord:
    """A callback job that ran: its callback is due."""
    submission = await submit(store, put_request("q", ResponseMode.CALLBACK))
    (entry,) = await reader.read(Lane("q", 0, ALICE), 1)
    record = await store.tasks.start("q", entry.task_id, reader.consumer)
    assert record is not None
    assert await store.tasks.finish(record, entry.entry_id, Outcome(Status.SUCCEEDED, 200, b"{}"))
    done = await store.tasks.load("q", submission.text_id)
    assert done is not None
    return done


async def due_at(redis: Redis, prefix: str, record: TaskRecord) -> float | None:
    score: float | None = await redis.zscore(
        Keys(prefix).callbacks_due(record.queue), record.task_id
    )
    return score


async def test_an_attempt_with_a_next_one_keeps_the_callback_due_until_after_it(
    store: Store, finished: TaskRecord, redis: Redis, prefix: str
) -> None:
    next_attempt = now_ms() + 30_000
    await store.callbacks.record_attempt(
        finished, CallbackState.RETRYING, 1, "HTTP 503", next_attempt_ms=next_attempt
    )
    assert await due_at(redis, prefix, finished) == next_attempt + CALLBACK_SETTLE_MS
    record = await store.tasks.load("q", finished.task_id)
    assert record is not None
    assert (record.callback_status, record.callback_attempts, record.callback_last_error) == (
        CallbackState.RETRYING,
        1,
        "HTTP 503",
    )
    assert record.public_view()["callback"]["last_error"] == "HTTP 503"
    counts = await store.statistics.counts("q")
    assert counts[field("callbacks", result="retrying")] == 1


async def test_an_attempt_without_a_next_one_settles_the_callback(
    store: Store, finished: TaskRecord, redis: Redis, prefix: str
) -> None:
    assert await due_at(redis, prefix, finished) is not None
    await store.callbacks.record_attempt(finished, CallbackState.RETRYING, 1, "HTTP 503", 1)
    await store.callbacks.record_attempt(finished, CallbackState.DELIVERED, 2, None)
    assert await due_at(redis, prefix, finished) is None
    record = await store.tasks.load("q", finished.task_id)
    assert record is not None
    assert (record.callback_status, record.callback_attempts, record.callback_last_error) == (
        CallbackState.DELIVERED,
        2,
        "",
    )
    counts = await store.statistics.counts("q")
    assert counts[field("callbacks", result="retrying")] == 1
    assert counts[field("callbacks", result="delivered")] == 1


async def test_an_attempt_never_brings_back_an_expired_task(
    store: Store, finished: TaskRecord, redis: Redis, prefix: str
) -> None:
    await redis.delete(Keys(prefix).task("q", finished.task_id))
    await store.callbacks.record_attempt(finished, CallbackState.DELIVERED, 1, None)
    assert await redis.exists(Keys(prefix).task("q", finished.task_id)) == 0
    assert await due_at(redis, prefix, finished) is None


async def test_overdue_lists_callbacks_past_their_settle_time_oldest_first(
    store: Store,
) -> None:
    due = store.callbacks.due
    now = now_ms()
    await due.expect_by("q", "late", now - 1_000)
    await due.expect_by("q", "later", now - 10)
    await due.expect_by("q", "latest", now - 5_000)
    await due.expect_by("q", "in-time", now + 60_000)
    await due.expect_by("other", "elsewhere", now - 1_000)
    assert await due.overdue(["q", "other", "empty"]) == {
        "q": ["latest", "late", "later"],
        "other": ["elsewhere"],
    }
    assert await due.overdue(["q"], limit=1) == {"q": ["latest"]}
    await due.settle("q", "latest")
    assert await due.overdue(["q"]) == {"q": ["late", "later"]}
    assert await due.overdue(["empty"]) == {}


async def test_a_freshly_finished_callback_job_is_not_overdue(
    store: Store, finished: TaskRecord
) -> None:
    assert await store.callbacks.due.overdue(["q"]) == {}


async def test_dead_letters_add_all_forget(
    store: Store, finished: TaskRecord, redis: Redis, prefix: str
) -> None:
    dead = store.callbacks.dead_letters
    assert await dead.all() == []
    await dead.add(finished, keep_s=600)
    assert await dead.all() == [("q", finished.task_id)]
    ttl = await redis.ttl(Keys(prefix).task("q", finished.task_id))
    assert 60 < ttl <= 600  # kept longer than the retention, for re-delivery
    await dead.forget("q", finished.task_id)
    assert await dead.all() == []


async def test_dead_letters_are_listed_oldest_first_across_queues(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(1_700_000_000_000, 1_700_000_000_010))
    monkeypatch.setattr("queue_service.store.ledger.now_ms", lambda: next(clock))
    dead = store.callbacks.dead_letters
    records = []
    for queue in ("b-queue", "a-queue", "c.queue"):
        submission = await submit(store, put_request(queue, ResponseMode.CALLBACK))
        record = await store.tasks.load(queue, submission.text_id)
        assert record is not None
        records.append(record)
        await dead.add(record, keep_s=600)
    assert await dead.all() == [(r.queue, r.task_id) for r in records]
