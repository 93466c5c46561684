"""Upstream routing: which upstream serves a job, from `QUEUE_UPSTREAMS_FILE` (TOML).

    [[upstream]]
    name = "deepseek"                 # names the concurrency limit
    endpoint = "/v1/chat/completions"
    model = "deepseek-r1"             # optional: only jobs whose data.model is this
    queue = "batch"                   # optional: only jobs of this queue
    base_url = "https://api.deepseek.com"
    api_key_env = "DEEPSEEK_API_KEY"  # or api_key = "..."
    timeout = 120                     # seconds per request
    max_concurrency = 8               # requests in flight, across every worker
    rpm = 500                         # requests per minute, across every worker
    tpm = 200000                      # tokens per minute (estimated, settled with usage)
    default_max_tokens = 1024         # a job's completion estimate when it sets no max_tokens
    priority_field = "priority"       # optional: the job's level written there (vLLM, SGLang)
    priority_online = 0               #   its value for level 0 (default 0)
    priority_offline = 1              #   and for level 1 (default 1; vLLM runs lower first)
    offline_service_tier = "flex"     # optional: level-1 jobs sent with service_tier = "flex"
    tier_fallback_before_deadline = 60  # seconds before the deadline the default tier takes over

    [[queue]]
    name = "batch"
    max_concurrency = 4               # optional: its jobs in flight, across every worker
    weight = 1                        # optional: its share beside a tenant's other queues

The most specific route wins (endpoint + queue + model, then endpoint + queue, then endpoint +
model, then endpoint); without one, jobs go to QUEUE_UPSTREAM_URL. What the level keys do:
`upstream_priority.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from queue_service.credentials import CredentialBox
from queue_service.store import TaskRecord
from queue_service.store.budgets import Budget, route_budget
from queue_service.store.tasks import Tasks
from queue_service.upstreams import QueueEntry, RoutingError, UpstreamEntry, load_routing_file

from .adapters import Upstream
from .upstream_priority import NO_HINTS, LevelHints

DEFAULT_ROUTE = "default"
"""The name of the route of jobs no routing-file entry matches (QUEUE_UPSTREAM_URL)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A concurrency limit shared by every worker: at most `size` holders of `name`."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class UpstreamRoute:
    upstream: Upstream
    timeout: float | None
    limits: tuple[Limit, ...]
    hints: LevelHints = NO_HINTS
    name: str = DEFAULT_ROUTE
    """The routing file's name of the upstream (usage is counted by it)."""
    budget: Budget | None = None
    """Its requests and tokens per minute, when the routing file sets them."""
    default_max_tokens: int = 1024


class RoutingTable:
    def __init__(
        self,
        default: Upstream,
        entries: Sequence[UpstreamEntry] = (),
        queues: Sequence[QueueEntry] = (),
    ) -> None:
        self.default = default
        self._routes: dict[tuple[str, str | None, str | None], tuple[Upstream, UpstreamEntry]] = {}
        for entry in entries:
            key = (entry.endpoint, entry.queue, entry.model)
            if key in self._routes:
                raise RoutingError(f"two upstreams route {_describe(key)}")
            self._routes[key] = (Upstream(entry.base_url, _api_key(entry)), entry)
        self._queue_limits = {
            q.name: Limit(f"queue:{q.name}", q.max_concurrency) for q in queues if q.max_concurrency
        }
        self.queue_weights = {q.name: q.weight for q in queues if q.weight != 1}
        """Scheduling weights of the queues the file gives one (others weigh 1)."""

    @property
    def has_budgets(self) -> bool:
        return any(entry.rpm or entry.tpm for _, entry in self._routes.values())

    @property
    def has_limits(self) -> bool:
        return bool(self._queue_limits) or any(
            entry.max_concurrency for _, entry in self._routes.values()
        )

    @classmethod
    def load(cls, path: str | None, default: Upstream) -> RoutingTable:
        if path is None:
            return cls(default)
        parsed = load_routing_file(path)
        return cls(default, parsed.upstream, parsed.queue)

    def resolve(self, endpoint: str, queue: str, model: object) -> UpstreamRoute:
        model_name = model if isinstance(model, str) else None
        for key in (
            (endpoint, queue, model_name),
            (endpoint, queue, None),
            (endpoint, None, model_name),
            (endpoint, None, None),
        ):
            found = self._routes.get(key)
            if found is not None:
                upstream, entry = found
                break
        else:
            return UpstreamRoute(self.default, None, self._limits(queue, None))
        limits = self._limits(queue, entry)
        budget = route_budget(entry.name, entry.rpm, entry.tpm)
        return UpstreamRoute(
            upstream,
            entry.timeout,
            limits,
            LevelHints.of(entry),
            entry.name,
            budget if budget.limited else None,
            entry.default_max_tokens,
        )

    def _limits(self, queue: str, entry: UpstreamEntry | None) -> tuple[Limit, ...]:
        """The queue's limit first, then the upstream's: one order everywhere, no deadlock."""
        limits = []
        if queue in self._queue_limits:
            limits.append(self._queue_limits[queue])
        if entry is not None and entry.max_concurrency:
            limits.append(Limit(f"upstream:{entry.name}", entry.max_concurrency))
        return tuple(limits)


class JobRoutes:
    """The route of a task's job: the routing table's, with the caller's own key on its
    upstream under passthrough auth (`credentials` set)."""

    def __init__(
        self, table: RoutingTable, tasks: Tasks, credentials: CredentialBox | None
    ) -> None:
        self.table = table
        self.tasks = tasks
        self.credentials = credentials

    def route(self, record: TaskRecord, data: dict[str, Any]) -> UpstreamRoute:
        """Its route, as far as the routing table says (no caller's key yet)."""
        return self.table.resolve(record.endpoint, record.queue, data.get("model"))

    async def with_callers_key(self, record: TaskRecord, route: UpstreamRoute) -> UpstreamRoute:
        """With passthrough auth, the route's upstream takes the caller's own key."""
        if self.credentials is None:
            return route
        sealed = await self.tasks.sealed_upstream_key(record.queue, record.task_id)
        key = self.credentials.open(sealed) if sealed else None
        return replace(route, upstream=replace(route.upstream, api_key=key))


def _api_key(entry: UpstreamEntry) -> str | None:
    if entry.api_key_env is None:
        return entry.api_key
    key = os.environ.get(entry.api_key_env)
    if not key:
        raise RoutingError(
            f"upstream {entry.name!r}: environment variable {entry.api_key_env} is not set"
        )
    return key


def _describe(key: tuple[str, str | None, str | None]) -> str:
    endpoint, queue, model = key
    return f"{endpoint} (queue={queue or '*'}, model={model or '*'})"
