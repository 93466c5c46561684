"""Per-queue counts shared by every process, and the figures read from the level streams."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis

from queue_service.models import ResponseMode, Status
from queue_service.store import Keys, Lane, Outcome, Store, StreamReader, TaskRecord
from queue_service.store.statistics import (
    BUCKETS,
    cumulative,
    field,
    finish_counts,
    observe,
    parse_field,
)

from . import ALICE, put_request, submit


async def run(store: Store, reader: StreamReader, outcome: Outcome, level: int = 0) -> None:
    """Read, start and finish the next entry of `q` as a worker."""
    (entry,) = await reader.read(Lane("q", level, ALICE), 1)
    record = await store.tasks.start("q", entry.task_id, reader.consumer)
    assert record is not None
    assert await store.tasks.finish(record, entry.entry_id, outcome)


def test_fields_name_a_statistic_and_its_labels() -> None:
    text = field("finished", status="succeeded", level=0, mode="blocking")
    assert text == "finished|status=succeeded|level=0|mode=blocking"
    assert parse_field(text) == (
        "finished",
        {"status": "succeeded", "level": "0", "mode": "blocking"},
    )
    assert parse_field("put") == ("put", {})


def test_an_observation_counts_in_one_bucket_and_the_sum() -> None:
    assert observe("run_seconds", 0.3, level=1) == {
        "run_seconds|le=0.5|level=1": 1,
        "run_seconds_sum|level=1": 0.3,
        "run_seconds_count|level=1": 1,
    }
    assert observe("x", 10_000)["x|le=inf"] == 1
    assert observe("x", -1.0)["x_sum"] == 0.0  # clocks of two hosts may disagree a little


def test_cumulative_buckets_end_with_inf() -> None:
    pairs = list(cumulative({0.5: 2, 5.0: 1, float("inf"): 1}))
    assert len(pairs) == len(BUCKETS) + 1
    assert dict(pairs)["0.25"] == 0
    assert dict(pairs)["0.5"] == 2
    assert dict(pairs)["5.0"] == 3
    assert pairs[-1] == ("+Inf", 4)


async def test_counts_after_submit_and_finish(store: Store, reader: StreamReader) -> None:
    for _ in range(3):
        await submit(store)
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    await run(store, reader, Outcome(Status.SUCCEEDED, 200, b"{}"))
    await run(store, reader, Outcome.error(Status.FAILED, 429, "slow down", "rate_limited"))
    counts = await store.statistics.counts("q")
    online = {"level": 0, "mode": "blocking"}
    assert counts[field("put", **online)] == 3
    assert counts[field("put", level=1, mode="callback")] == 1
    assert counts[field("finished", status="succeeded", **online)] == 1
    assert counts[field("finished", status="failed", **online)] == 1
    assert counts[field("upstream_status", code=200)] == 1
    assert counts[field("upstream_status", code=429)] == 1
    assert counts[field("run_seconds_count", **online)] == 2
    assert await store.statistics.counts("never-used") == {}


def test_finish_counts_of_a_job_that_never_started_have_no_run_time() -> None:
    queued = TaskRecord(
        task_id="TASK-1-0-C-260101000000-0001-000001",
        queue="q",
        level=0,
        mode=ResponseMode.CALLBACK,
        endpoint="chat/completions",
        data=b"{}",
        callback_url="https://example.com/hook",
        tenant="t",
        status=Status.QUEUED,
        created_at=1_000_000,
        deadline=1_001_000,
    )
    counts = finish_counts(queued, Outcome(Status.TIMEOUT, 504, b"{}"), 1_002_000)
    assert counts[field("end_to_end_seconds_sum", level=0, mode="callback")] == 2.0
    assert not any(name.startswith(("pickup", "run")) for name in counts)


async def test_add_counts_anything(store: Store) -> None:
    await store.statistics.add("q", field("callbacks", result="delivered"))
    await store.statistics.add("q", field("callbacks", result="delivered"), 2)
    assert await store.statistics.counts("q") == {"callbacks|result=delivered": 3.0}


async def test_level_waiting_in_flight_and_oldest_waiting(
    store: Store, reader: StreamReader
) -> None:
    await store.queues.id("q")
    assert await store.statistics.level("q", 0) == {
        "waiting": 0,
        "in_flight": 0,
        "oldest_waiting_s": None,
    }
    first = time.time()
    for _ in range(3):
        await submit(store)
    await reader.read(Lane("q", 0, ALICE), 1)
    level = await store.statistics.level("q", 0)
    assert (level["waiting"], level["in_flight"]) == (2, 1)
    # the oldest waiting job is the second one submitted, not the one in flight
    assert 0 <= level["oldest_waiting_s"] <= time.time() - first + 0.01
    await reader.read(Lane("q", 0, ALICE), 2)
    assert await store.statistics.level("q", 0) == {
        "waiting": 0,
        "in_flight": 3,
        "oldest_waiting_s": None,
    }


async def test_oldest_waiting_is_the_age_of_the_first_undelivered_entry(
    store: Store, reader: StreamReader, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        await submit(store)
    await reader.read(Lane("q", 0, ALICE), 1)
    (_, (second, _)) = await redis.xrange(Keys(prefix).stream("q", 0, ALICE))
    added_s = int(second.split(b"-")[0]) / 1000
    monkeypatch.setattr(
        "queue_service.store.statistics.time", SimpleNamespace(time=lambda: added_s + 42.5)
    )
    assert (await store.statistics.level("q", 0))["oldest_waiting_s"] == 42.5


async def test_queue_puts_the_figures_together(store: Store, reader: StreamReader) -> None:
    await submit(store)
    await submit(store)
    await submit(store, put_request("q", ResponseMode.CALLBACK, level=1))
    await run(store, reader, Outcome(Status.SUCCEEDED, 200, b"{}"))
    await store.queues.set_paused("q", True)
    await store.heartbeats.beat("everything", {"queues": None})
    await store.heartbeats.beat("just-q", {"queues": ["other", "q"]})
    await store.heartbeats.beat("elsewhere", {"queues": ["other"]})
    figures = await store.statistics.queue("q")
    assert sorted(figures.pop("workers")) == ["everything", "just-q"]
    level_0 = figures["levels"]["0"]
    level_1 = figures["levels"]["1"]
    assert level_0.pop("oldest_waiting_s") >= 0
    assert level_1.pop("oldest_waiting_s") >= 0
    assert figures == {
        "queue": "q",
        "paused": True,
        "levels": {
            "0": {"waiting": 1, "in_flight": 0, "totals": {"put": 2, "succeeded": 1}},
            "1": {"waiting": 1, "in_flight": 0, "totals": {"put": 1}},
        },
        "totals": {"put": 3, "succeeded": 1},
        "following_upstream": 0,
    }


async def test_queue_of_an_unknown_queue_is_all_zero(store: Store) -> None:
    figures = await store.statistics.queue("nothing-here")
    assert figures == {
        "queue": "nothing-here",
        "paused": False,
        "levels": {
            level: {"waiting": 0, "in_flight": 0, "oldest_waiting_s": None, "totals": {}}
            for level in ("0", "1")
        },
        "totals": {},
        "workers": [],
        "following_upstream": 0,
    }
