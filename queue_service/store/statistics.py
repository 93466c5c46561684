"""Counts kept in Redis per queue, so that every API process reports the same figures.

Each statistic is a hash field `name|label=value|...`; histograms keep one field per
bucket (`le=<bound>`, not cumulative), plus `_sum` and `_count`.
"""

from __future__ import annotations

from collections.abc import Iterable

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
