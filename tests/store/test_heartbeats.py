"""Worker heartbeats: beat, live, forget; a worker silent too long is pruned."""

from __future__ import annotations

import time
from types import SimpleNamespace

import orjson
import pytest
from redis.asyncio import Redis

from queue_service.store import Keys
from queue_service.store.heartbeats import MIN_STALE_S, Heartbeats


@pytest.fixture
def heartbeats(redis: Redis, prefix: str) -> Heartbeats:
    return Heartbeats(redis, Keys(prefix), interval=0.01)


async def test_a_beat_makes_a_worker_live_with_its_info(heartbeats: Heartbeats) -> None:
    before = time.time()
    await heartbeats.beat("w1", {"host": "h", "pid": 1, "queues": ["q"], "slots": 4})
    (live,) = await heartbeats.live()
    assert {key: live[key] for key in ("name", "host", "pid", "queues", "slots")} == {
        "name": "w1",
        "host": "h",
        "pid": 1,
        "queues": ["q"],
        "slots": 4,
    }
    assert before <= live["seen_at"] <= time.time()


async def test_the_latest_beat_replaces_the_previous_one(heartbeats: Heartbeats) -> None:
    await heartbeats.beat("w1", {"in_flight": 1})
    await heartbeats.beat("w2", {"in_flight": 0})
    await heartbeats.beat("w1", {"in_flight": 3})
    live = {beat["name"]: beat["in_flight"] for beat in await heartbeats.live()}
    assert live == {"w1": 3, "w2": 0}


async def test_forget_removes_a_worker_at_once(heartbeats: Heartbeats) -> None:
    await heartbeats.beat("w1", {})
    await heartbeats.beat("w2", {})
    await heartbeats.forget("w1")
    assert [beat["name"] for beat in await heartbeats.live()] == ["w2"]
    await heartbeats.forget("never-seen")


async def test_a_stale_beat_is_pruned(heartbeats: Heartbeats, redis: Redis, prefix: str) -> None:
    await heartbeats.beat("alive", {})
    old = orjson.dumps({"name": "dead", "seen_at": time.time() - MIN_STALE_S - 1}).decode()
    await redis.hset(Keys(prefix).workers, "dead", old)  # type: ignore[misc]
    assert [beat["name"] for beat in await heartbeats.live()] == ["alive"]
    assert await redis.hkeys(Keys(prefix).workers) == [b"alive"]  # type: ignore[misc]


def test_stale_means_five_intervals_but_never_under_the_minimum(redis: Redis, prefix: str) -> None:
    assert Heartbeats(redis, Keys(prefix), interval=0.01).stale_after == MIN_STALE_S
    assert Heartbeats(redis, Keys(prefix), interval=10).stale_after == 50


async def test_a_beat_older_than_five_intervals_is_pruned(
    redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeats = Heartbeats(redis, Keys(prefix), interval=10)
    await heartbeats.beat("w1", {})
    seen = time.time()
    later = SimpleNamespace(time=lambda: seen + 49)  # the heartbeats module's clock only
    monkeypatch.setattr("queue_service.store.heartbeats.time", later)
    assert [beat["name"] for beat in await heartbeats.live()] == ["w1"]
    later.time = lambda: seen + 51
    assert await heartbeats.live() == []
    assert await redis.hlen(Keys(prefix).workers) == 0  # type: ignore[misc]
