"""Operator figures, read from Redis so every API process reports the same: per-queue stats,
live workers, and the Prometheus exposition of both."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable
from typing import Any, cast

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from queue_service.store.broker import Broker
from queue_service.store.keys import CONSUMER_GROUP
from queue_service.store.statistics import cumulative, parse_field

WORKER_STALE_S = 15.0
HISTOGRAMS = ("pickup_seconds", "run_seconds", "end_to_end_seconds")


async def live_workers(broker: Broker) -> list[dict[str, Any]]:
    """Workers whose heartbeat is recent; stale entries (dead workers) are pruned."""
    raw = await cast(Awaitable[dict[bytes, bytes]], broker.redis.hgetall(broker.keys.workers))
    now = time.time()
    alive: list[dict[str, Any]] = []
    stale: list[str] = []
    for name, beat in raw.items():
        info = orjson.loads(beat)
        if now - info["seen_at"] < WORKER_STALE_S:
            alive.append(info)
        else:
            stale.append(name.decode())
    if stale:
        await cast(Awaitable[int], broker.redis.hdel(broker.keys.workers, *stale))
    return alive


async def _level(broker: Broker, queue: str, level: int) -> dict[str, Any]:
    stream = broker.keys.stream(queue, level)
    length = await broker.redis.xlen(stream)
    pending = (await broker.redis.xpending(stream, CONSUMER_GROUP))["pending"]
    oldest_age = None
    groups = await broker.redis.xinfo_groups(stream)
    last = next(
        (g["last-delivered-id"] for g in groups if g["name"] == CONSUMER_GROUP.encode()), None
    )
    if last is not None and length > pending:
        first = await broker.redis.xrange(stream, min=b"(" + last, count=1)
        if first:
            oldest_age = round(time.time() - int(first[0][0].split(b"-")[0]) / 1000, 3)
    return {
        "waiting": max(length - pending, 0),
        "in_flight": pending,
        "oldest_waiting_s": oldest_age,
    }


async def queue_stats(broker: Broker, queue: str) -> dict[str, Any]:
    await broker.ensure_groups(queue)
    raw = await cast(
        Awaitable[dict[bytes, bytes]], broker.redis.hgetall(broker.keys.queue_stats(queue))
    )
    totals: dict[str, int] = defaultdict(int)
    by_level: dict[str, dict[str, int]] = {"0": defaultdict(int), "1": defaultdict(int)}
    for text, value in raw.items():
        name, labels = parse_field(text.decode())
        key = labels["status"] if name == "finished" else name if name == "put" else None
        if key is not None:
            totals[key] += int(float(value))
            by_level[labels["level"]][key] += int(float(value))
    workers = [
        w["name"] for w in await live_workers(broker) if w["queues"] is None or queue in w["queues"]
    ]
    paused = bool(await cast(Awaitable[int], broker.redis.sismember(broker.keys.paused, queue)))
    levels = {}
    for level in ("0", "1"):
        levels[level] = await _level(broker, queue, int(level))
        levels[level]["totals"] = dict(by_level[level])
    return {
        "queue": queue,
        "paused": paused,
        "levels": levels,
        "totals": dict(totals),
        "workers": workers,
    }


class _Snapshot(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


async def prometheus_text(broker: Broker) -> bytes:
    """The Prometheus exposition of every queue's figures and the live workers."""
    counters: dict[str, CounterMetricFamily] = {}
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    waiting = GaugeMetricFamily("queue_waiting_jobs", "Jobs waiting", labels=["queue", "level"])
    in_flight = GaugeMetricFamily("queue_in_flight_jobs", "Jobs running", labels=["queue", "level"])
    for queue in await broker.queues():
        for level in (0, 1):
            figures = await _level(broker, queue, level)
            waiting.add_metric([queue, str(level)], figures["waiting"])
            in_flight.add_metric([queue, str(level)], figures["in_flight"])
        raw = await cast(
            Awaitable[dict[bytes, bytes]], broker.redis.hgetall(broker.keys.queue_stats(queue))
        )
        for text, value in raw.items():
            name, labels = parse_field(text.decode())
            labels["queue"] = queue
            base = name.removesuffix("_sum").removesuffix("_count")
            if base in HISTOGRAMS:
                bound = labels.pop("le", None)
                entry = histograms.setdefault(
                    (base, tuple(sorted(labels.items()))), {"buckets": {}, "sum": 0.0}
                )
                if name.endswith("_sum"):
                    entry["sum"] = float(value)
                elif bound is not None:
                    entry["buckets"][float(bound)] = float(value)
                continue
            family = counters.setdefault(
                name,
                CounterMetricFamily(
                    f"queue_{name}", f"queue-service {name}", labels=sorted(labels)
                ),
            )
            family.add_metric([labels[k] for k in sorted(labels)], float(value))
    families: list[Any] = [waiting, in_flight, *counters.values()]
    by_name: dict[str, HistogramMetricFamily] = {}
    for (name, label_items), entry in histograms.items():
        keys = [k for k, _ in label_items]
        histogram = by_name.setdefault(
            name, HistogramMetricFamily(f"queue_{name}", f"queue-service {name}", labels=keys)
        )
        histogram.add_metric(
            [v for _, v in label_items], list(cumulative(entry["buckets"])), entry["sum"]
        )
    families += by_name.values()
    workers = await live_workers(broker)
    connected = GaugeMetricFamily("queue_workers", "Live worker processes")
    connected.add_metric([], len(workers))
    free = GaugeMetricFamily("queue_worker_free_slots", "Free job slots", labels=["worker"])
    for worker in workers:
        free.add_metric([worker["name"]], worker["slots"] - worker["in_flight"])
    families += [connected, free]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
