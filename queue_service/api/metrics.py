"""`/metrics`: the Prometheus exposition of every queue's figures and the live workers, read
from the store so every API process reports the same."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from queue_service.store import Store
from queue_service.store.statistics import cumulative, parse_field
from queue_service.store.usage import UsageCounts, UsageSeries

HISTOGRAMS = ("pickup_seconds", "run_seconds", "end_to_end_seconds")


class _Snapshot(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


OTHER_QUEUES = "(other)"
"""The queue label of every queue beyond the busiest ones, summed."""
OTHER_MODELS = "(other)"
"""The model label of every model beyond the most used ones, summed."""
TOKEN_KINDS = ("prompt", "completion", "reasoning")


async def prometheus_text(store: Store, top_queues: int, top_models: int) -> bytes:
    """The Prometheus exposition of the queues' figures, usage and the live workers.

    Per-queue series only for the `top_queues` busiest queues (jobs waiting and running,
    then puts), per-model usage series only for the `top_models` most used models; the rest
    are summed under the label `(other)`, so a scrape stays small however many queues and
    models there are."""
    snapshots = await store.statistics.snapshot(sorted(await store.queues.all()))
    ranked = sorted(snapshots, key=lambda queue: snapshots[queue].activity, reverse=True)
    shown = set(ranked[:top_queues])
    gauges: dict[tuple[str, str, str], float] = defaultdict(float)
    counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
        lambda: defaultdict(float)
    )
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for queue, snapshot in snapshots.items():
        label = queue if queue in shown else OTHER_QUEUES
        for level, (waiting, in_flight) in snapshot.levels.items():
            gauges[("waiting", label, str(level))] += waiting
            gauges[("in_flight", label, str(level))] += in_flight
        for text, value in snapshot.counts.items():
            name, labels = parse_field(text)
            labels["queue"] = label
            base = name.removesuffix("_sum").removesuffix("_count")
            if base in HISTOGRAMS:
                bound = labels.pop("le", None)
                entry = histograms.setdefault(
                    (base, tuple(sorted(labels.items()))),
                    {"buckets": defaultdict(float), "sum": 0.0},
                )
                if name.endswith("_sum"):
                    entry["sum"] += value
                elif bound is not None:
                    entry["buckets"][float(bound)] += value
                continue
            counters[name][tuple(sorted(labels.items()))] += value
    levels = ["queue", "level"]
    jobs = {
        "waiting": GaugeMetricFamily("queue_waiting_jobs", "Jobs waiting", labels=levels),
        "in_flight": GaugeMetricFamily("queue_in_flight_jobs", "Jobs running", labels=levels),
    }
    for (kind, queue_label, level_label), amount in gauges.items():
        jobs[kind].add_metric([queue_label, level_label], amount)
    families: list[Any] = list(jobs.values())
    for name, series in counters.items():
        family: CounterMetricFamily | None = None
        for label_items, amount in series.items():
            if family is None:
                keys = [k for k, _ in label_items]
                family = CounterMetricFamily(f"queue_{name}", f"queue-service {name}", labels=keys)
            family.add_metric([v for _, v in label_items], amount)
        if family is not None:
            families.append(family)
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
    families += _usage_families(await store.usage.totals(), shown, top_models)
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


def _usage_families(
    totals: dict[UsageSeries, UsageCounts], shown_queues: set[str], top_models: int
) -> list[CounterMetricFamily]:
    """`queue_tokens_total` by kind and `queue_usage_requests_total`, per tenant, queue,
    model and route (tenants and routes are bounded by the keys and routing files)."""
    use: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # model -> [tokens, requests]
    for series, counts in totals.items():
        use[series.model][0] += counts.prompt_tokens + counts.completion_tokens
        use[series.model][1] += counts.requests
    shown_models = set(sorted(use, key=use.__getitem__, reverse=True)[:top_models])
    summed: dict[tuple[str, ...], UsageCounts] = defaultdict(UsageCounts)
    for series, counts in totals.items():
        queue = series.queue if series.queue in shown_queues else OTHER_QUEUES
        model = series.model if series.model in shown_models else OTHER_MODELS
        summed[(series.tenant, queue, model, series.route)] += counts
    labels = ["tenant", "queue", "model", "route"]
    tokens = CounterMetricFamily(
        "queue_tokens", "Tokens the answers reported using", labels=[*labels, "kind"]
    )
    requests = CounterMetricFamily(
        "queue_usage_requests",
        "Jobs counted in usage (succeeded, or reporting tokens)",
        labels=labels,
    )
    for label_values, counts in sorted(summed.items()):
        requests.add_metric(list(label_values), counts.requests)
        for kind in TOKEN_KINDS:
            tokens.add_metric([*label_values, kind], getattr(counts, f"{kind}_tokens"))
    return [tokens, requests]
