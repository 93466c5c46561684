"""Reading followed upstream tasks (Midjourney, Suno) in batches: which tasks share a read,
and one read of a batch.

Tasks share a read when one request can carry them all: the same API, the same upstream (its
URL and the key it is called with: under passthrough auth each caller's own) and the same
concurrency limits. A read holds a slot of the upstream route's `max_concurrency` only (not of
the job's queue: a read serves many queues' jobs and runs no job), and the whole of it, the
wait for that slot included, is bounded by `READ_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from queue_service.store import TaskRecord
from queue_service.store.following import FollowedTask
from queue_service.timing import now_ms

from .adapters import TaskApi, Upstream
from .adapters.task_apis import UnreadableAnswer
from .limiter import Limiter
from .routing import Limit, UpstreamRoute

log = logging.getLogger("workers.task_reads")

READ_TIMEOUT = 15.0
"""Seconds one batch read may take, its wait for a slot of the route's limit included: well
within the lease on the tasks it reads (`follower.CLAIM_LEASE_MS`), after which another
follower may read them."""
UPSTREAM_LIMIT_PREFIX = "upstream:"
"""How `routing.RoutingTable` names an upstream's own limit (a queue's: `queue:`)."""


def read_limits(route: UpstreamRoute) -> tuple[Limit, ...]:
    """The limits a read of the route's tasks holds: its upstream's, not its queue's."""
    return tuple(limit for limit in route.limits if limit.name.startswith(UPSTREAM_LIMIT_PREFIX))


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What tasks read in one request have in common."""

    api: str
    upstream: Upstream
    limits: tuple[Limit, ...]


@dataclass(frozen=True, slots=True)
class Followed:
    """A claimed task to read, with where and how to read it."""

    claimed: FollowedTask
    api: TaskApi
    route: UpstreamRoute

    @property
    def record(self) -> TaskRecord:
        return self.claimed.record

    @property
    def key(self) -> BatchKey:
        return BatchKey(self.api.name, self.route.upstream, read_limits(self.route))


def batches(due: Iterable[Followed], size: int) -> list[list[Followed]]:
    """The tasks grouped by what they share (`BatchKey`), in batches of up to `size`."""
    groups: dict[BatchKey, list[Followed]] = {}
    for followed in due:
        groups.setdefault(followed.key, []).append(followed)
    return [
        members[start : start + size]
        for members in groups.values()
        for start in range(0, len(members), size)
    ]


@dataclass(frozen=True, slots=True)
class Read:
    """What one batch read found."""

    found: dict[str, Any]
    """Upstream task id -> task object, for the tasks the upstream answered."""
    error: str = ""
    """Why the read failed ("" when it worked: a task it did not answer is unknown there)."""


async def read_batch(
    batch: list[Followed], http: httpx.AsyncClient, limiter: Limiter, lease: str
) -> Read:
    """Read a batch's upstream tasks in one request, within its limits and `READ_TIMEOUT`."""
    first = batch[0]
    api, route = first.api, first.route
    ids = [followed.record.upstream_task_id for followed in batch]
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            async with limiter.hold(read_limits(route), lease, 0, now_ms()):
                return Read(await api.fetch(http, route.upstream, ids))
    except TimeoutError:
        error = f"no answer within {READ_TIMEOUT:g} s (the wait for the route's limit included)"
    except UnreadableAnswer as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    log.warning("reading %d %s tasks failed (%s); reading later", len(ids), api.name, error)
    return Read({}, error)
