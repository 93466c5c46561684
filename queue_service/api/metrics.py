"""`/metrics`: the Prometheus exposition of every queue's figures and the live workers, read
from the store so every API process reports the same."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from queue_service.store import Store
from queue_service.store.statistics import cumulative, parse_field

HISTOGRAMS = ("pickup_seconds", "run_seconds", "end_to_end_seconds")


class _Snapshot(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


async def prometheus_text(store: Store) -> bytes:
    """The Prometheus exposition of every queue's figures and the live workers."""
    counters: dict[str, CounterMetricFamily] = {}
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    waiting = GaugeMetricFamily("queue_waiting_jobs", "Jobs waiting", labels=["queue", "level"])
    in_flight = GaugeMetricFamily("queue_in_flight_jobs", "Jobs running", labels=["queue", "level"])
    for queue in await store.queues.all():
        for level in (0, 1):
            figures = await store.statistics.level(queue, level)
            waiting.add_metric([queue, str(level)], figures["waiting"])
            in_flight.add_metric([queue, str(level)], figures["in_flight"])
        for text, value in (await store.statistics.counts(queue)).items():
            name, labels = parse_field(text)
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
    workers = await store.heartbeats.live()
    connected = GaugeMetricFamily("queue_workers", "Live worker processes")
    connected.add_metric([], len(workers))
    free = GaugeMetricFamily("queue_worker_free_slots", "Free job slots", labels=["worker"])
    for worker in workers:
        free.add_metric([worker["name"]], worker["slots"] - worker["in_flight"])
    families += [connected, free]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
