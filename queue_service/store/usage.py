"""Usage accounting: requests and tokens per tenant, queue, model and upstream route, kept in
Redis so that every API process reports the same figures.

Two shapes, for two readers:

- per tenant, one hash per hour (`Keys.usage_hour`) for `GET /v1/queue/usage`: a window is
  the sum of its hours, and each hour expires `retention_s` after it ends, so old usage trims
  itself; the tenants that have any are in one set (`Keys.usage_tenants`), for admins' reads;
- all-time totals in one hash (`Keys.usage_totals`) for the Prometheus counters, which must
  never go down as hours expire.

A field names its series as JSON (`[queue, model, route, kind]`, with the tenant first in the
totals): a model name may hold any character. A batch of counts is one pipelined round trip;
not a transaction, so it stays Cluster-safe (the keys live in many slots).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Collection, Iterable
from dataclasses import dataclass, fields
from typing import cast

import orjson
from redis.asyncio import Redis

from .keys import Keys

HOUR = 3600
"""The width of a usage bucket, in seconds: windows are counted in whole hours."""


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """What a series used: jobs answered, and the tokens their answers reported (reasoning
    tokens are the part of the completion tokens spent reasoning, where reported)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, kind) for kind in KINDS)

    def as_dict(self) -> dict[str, int]:
        return dict(zip(KINDS, self.as_tuple(), strict=True))


KINDS = tuple(field.name for field in fields(UsageCounts))


@dataclass(frozen=True, slots=True, order=True)
class UsageSeries:
    """Whose usage, where: the labels a count is kept under."""

    tenant: str
    queue: str
    model: str
    route: str


def hour_window(start_s: float, end_s: float) -> tuple[int, int]:
    """The whole hours covering [start_s, end_s), as epoch seconds."""
    return math.floor(start_s / HOUR) * HOUR, math.ceil(end_s / HOUR) * HOUR


class UsageLedger:
    def __init__(self, redis: Redis, keys: Keys, retention_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self.retention_s = retention_s

    async def record(self, series: UsageSeries, counts: UsageCounts, at_s: float) -> None:
        """Add one job's usage to its hour and to the totals, in one round trip."""
        await self.record_many({(series, math.floor(at_s / HOUR)): counts})

    async def record_many(self, batch: dict[tuple[UsageSeries, int], UsageCounts]) -> None:
        """Add usage to the hours (epoch hours) and to the totals, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for (series, hour), counts in batch.items():
                hour_key = self._keys.usage_hour(series.tenant, hour)
                labels = (series.queue, series.model, series.route)
                for kind, amount in counts.as_dict().items():
                    if amount:
                        pipe.hincrby(hour_key, _field(*labels, kind), amount)
                        totals_field = _field(series.tenant, *labels, kind)
                        pipe.hincrby(self._keys.usage_totals, totals_field, amount)
                pipe.expireat(hour_key, (hour + 1) * HOUR + self.retention_s)
                pipe.sadd(self._keys.usage_tenants, series.tenant)
            pipe.expire(self._keys.usage_tenants, self.retention_s + HOUR)
            await pipe.execute()

    async def window(
        self,
        start_s: float,
        end_s: float,
        tenants: Collection[str] | None = None,
        queue: str | None = None,
    ) -> dict[UsageSeries, UsageCounts]:
        """The usage of the hours covering [start_s, end_s) (those still kept), per series:
        of `tenants` (None: every tenant), on `queue` (None: every queue)."""
        start, end = hour_window(start_s, end_s)
        this_hour = math.floor(time.time() / HOUR)
        oldest_kept = this_hour - math.ceil(self.retention_s / HOUR)
        hours = range(max(start // HOUR, oldest_kept), min(end // HOUR, this_hour + 1))
        if tenants is None:
            members = await cast(
                Awaitable[set[bytes]], self._redis.smembers(self._keys.usage_tenants)
            )
            tenants = sorted(member.decode() for member in members)
        wanted = [(tenant, hour) for tenant in tenants for hour in hours]
        if not wanted:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant, hour in wanted:
                pipe.hgetall(self._keys.usage_hour(tenant, hour))
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        found = []
        for (tenant, _), reply in zip(wanted, replies, strict=True):
            for text, value in reply.items():
                queue_name, model, route, kind = orjson.loads(text)
                if queue is None or queue_name == queue:
                    found.append((UsageSeries(tenant, queue_name, model, route), kind, value))
        return _summed(found)

    async def totals(self) -> dict[UsageSeries, UsageCounts]:
        """Every series' usage since it began (what the Prometheus counters show)."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.usage_totals)
        )
        found = []
        for text, value in raw.items():
            tenant, queue, model, route, kind = orjson.loads(text)
            found.append((UsageSeries(tenant, queue, model, route), kind, value))
        return _summed(found)


def _field(*labels: str) -> str:
    return orjson.dumps(labels).decode()


def _summed(found: Iterable[tuple[UsageSeries, str, bytes]]) -> dict[UsageSeries, UsageCounts]:
    """Counts read from Redis (series, kind, count) summed per series."""
    sums: dict[UsageSeries, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    for series, kind, value in found:
        sums[series][kind] += int(value)
    return {series: UsageCounts(**counts) for series, counts in sums.items()}
