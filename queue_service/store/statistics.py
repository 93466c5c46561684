"""Counts kept in Redis per queue, so that every API process reports the same figures, and
the figures read from the level streams themselves (waiting, in flight, oldest waiting).

Each statistic is a hash field `name|label=value|...`; histograms keep one field per
bucket (`le=<bound>`, not cumulative), plus `_sum` and `_count`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from .heartbeats import Heartbeats
from .keys import CONSUMER_GROUP, Keys
from .queues import SWEEP_PAGE, QueueRegistry, lanes_of
from .records import Outcome, TaskRecord

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def field(name: str, **labels: object) -> str:
    return "|".join([name, *(f"{key}={value}" for key, value in labels.items())])


def parse_field(text: str) -> tuple[str, dict[str, str]]:
    name, *pairs = text.split("|")
    return name, dict(pair.split("=", 1) for pair in pairs)


def observe(name: str, seconds: float, **labels: object) -> dict[str, float]:
    """The increments that record one histogram observation."""
    bound = next((b for b in BUCKETS if seconds <= b), float("inf"))
    return {
        field(name, le=bound, **labels): 1,
        field(f"{name}_sum", **labels): max(seconds, 0.0),
        field(f"{name}_count", **labels): 1,
    }


def cumulative(counts: dict[float, float]) -> Iterable[tuple[str, float]]:
    """Per-bucket counts -> Prometheus's cumulative (`le`, count) pairs, +Inf last."""
    total = 0.0
    for bound in (*BUCKETS, float("inf")):
        total += counts.get(bound, 0.0)
        yield ("+Inf" if bound == float("inf") else str(bound)), total


def finish_counts(record: TaskRecord, outcome: Outcome, finished: int) -> dict[str, float]:
    """The increments that count a finished job (its outcome and its timings)."""
    labels = {"level": record.level, "mode": record.mode.value}
    counts: dict[str, float] = {
        field("finished", status=outcome.status.value, **labels): 1,
        field("upstream_status", code=outcome.status_code): 1,
    }
    counts |= observe("end_to_end_seconds", (finished - record.created_at) / 1000, **labels)
    if record.started_at is not None:
        started = record.started_at
        counts |= observe("pickup_seconds", (started - record.created_at) / 1000, **labels)
        counts |= observe("run_seconds", (finished - started) / 1000, **labels)
    return counts


class Statistics:
    """Reads (and the few direct writes) of the per-queue counts and stream figures."""

    def __init__(
        self, redis: Redis, keys: Keys, queues: QueueRegistry, heartbeats: Heartbeats
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._queues = queues
        self._heartbeats = heartbeats

    async def counts(self, queue: str) -> dict[str, float]:
        """Every count of a queue: statistic field -> value."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.queue_stats(queue))
        )
        return {name.decode(): float(value) for name, value in raw.items()}

    async def add(self, queue: str, statistic: str, amount: float = 1) -> None:
        await cast(
            Awaitable[float],
            self._redis.hincrbyfloat(self._keys.queue_stats(queue), statistic, amount),
        )

    async def level(self, queue: str, level: int) -> dict[str, Any]:
        """A level's waiting and in-flight jobs (over its tenants' lanes), and the oldest
        waiting one's age."""
        waiting = in_flight = 0
        oldest_ms: int | None = None
        for lane in await self._queues.lanes(queue):
            if lane.level != level:
                continue
            stream = self._queues.lane_key(lane)
            length = await self._redis.xlen(stream)
            if not length:  # nothing waits or runs (the stream may not even exist)
                continue
            pending = (await self._redis.xpending(stream, CONSUMER_GROUP))["pending"]
            waiting += max(length - pending, 0)
            in_flight += pending
            first = await self._first_waiting(stream, length, pending)
            if first is not None and (oldest_ms is None or first < oldest_ms):
                oldest_ms = first
        oldest_age = None if oldest_ms is None else round(time.time() - oldest_ms / 1000, 3)
        return {"waiting": waiting, "in_flight": in_flight, "oldest_waiting_s": oldest_age}

    async def _first_waiting(self, stream: str, length: int, pending: int) -> int | None:
        """When the lane's oldest entry not handed out yet was put (ms), if it has one."""
        if length <= pending:
            return None
        groups = await self._redis.xinfo_groups(stream)
        last = next(
            (g["last-delivered-id"] for g in groups if g["name"] == CONSUMER_GROUP.encode()),
            None,
        )
        if last is None:
            return None
        first = await self._redis.xrange(stream, min=b"(" + last, count=1)
        return int(first[0][0].split(b"-")[0]) if first else None

    async def snapshot(self, queues: list[str]) -> dict[str, QueueSnapshot]:
        """Every given queue's levels and counts, two round trips per `SWEEP_PAGE` queues."""
        snapshots: dict[str, QueueSnapshot] = {}
        for start in range(0, len(queues), SWEEP_PAGE):
            snapshots |= await self._snapshot(queues[start : start + SWEEP_PAGE])
        return snapshots

    async def _snapshot(self, queues: list[str]) -> dict[str, QueueSnapshot]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.smembers(self._keys.queue_tenants(queue))
            tenants = await pipe.execute(raise_on_error=False)
        lanes = {
            queue: lanes_of(
                queue, {t.decode() for t in members} if isinstance(members, set) else set()
            )
            for queue, members in zip(queues, tenants, strict=True)
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                for lane in lanes[queue]:
                    stream = self._queues.lane_key(lane)
                    pipe.xlen(stream)
                    pipe.xpending(stream, CONSUMER_GROUP)
                pipe.hgetall(self._keys.queue_stats(queue))
            replies = iter(await pipe.execute(raise_on_error=False))
        snapshots = {}
        for queue in queues:
            levels = {0: (0, 0), 1: (0, 0)}
            for lane in lanes[queue]:
                length, pending = next(replies), next(replies)
                length = length if isinstance(length, int) else 0
                flying = pending["pending"] if isinstance(pending, dict) else 0
                waiting, in_flight = levels[lane.level]
                levels[lane.level] = (waiting + max(length - flying, 0), in_flight + flying)
            raw = next(replies)
            raw = raw if isinstance(raw, dict) else {}
            counts = {name.decode(): float(value) for name, value in raw.items()}
            snapshots[queue] = QueueSnapshot(levels, counts)
        return snapshots

    async def queue(self, queue: str) -> dict[str, Any]:
        """A queue's figures: per level, totals by outcome, paused, the workers serving it,
        the jobs whose upstream task is being followed (they hold no entry and no slot)."""
        await self._queues.ensure_groups(queue)
        totals: dict[str, int] = defaultdict(int)
        by_level: dict[str, dict[str, int]] = {"0": defaultdict(int), "1": defaultdict(int)}
        for text, value in (await self.counts(queue)).items():
            name, labels = parse_field(text)
            key = labels["status"] if name == "finished" else name if name == "put" else None
            if key is not None:
                totals[key] += int(value)
                by_level[labels["level"]][key] += int(value)
        workers = [
            w["name"]
            for w in await self._heartbeats.live()
            if w["queues"] is None or queue in w["queues"]
        ]
        levels = {}
        for level in ("0", "1"):
            levels[level] = await self.level(queue, int(level))
            levels[level]["totals"] = dict(by_level[level])
        return {
            "queue": queue,
            "paused": await self._queues.is_paused(queue),
            "levels": levels,
            "totals": dict(totals),
            "workers": workers,
            "following_upstream": await cast(
                Awaitable[int], self._redis.zcard(self._keys.followed(queue))
            ),
        }


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """A queue's figures at one moment: per level (waiting, in flight), and its counts."""

    levels: dict[int, tuple[int, int]]
    counts: dict[str, float]

    @property
    def activity(self) -> float:
        """How busy the queue is and was: jobs waiting and running, plus every put."""
        now = sum(waiting + in_flight for waiting, in_flight in self.levels.values())
        puts = sum(v for k, v in self.counts.items() if parse_field(k)[0] == "put")
        return now + puts
