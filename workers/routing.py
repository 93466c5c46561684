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

    [[queue]]
    name = "batch"
    max_concurrency = 4               # this queue's jobs in flight, across every worker

The most specific route wins (endpoint + queue + model, then endpoint + queue, then endpoint +
model, then endpoint); without one, jobs go to QUEUE_UPSTREAM_URL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from queue_service.config_files import load_toml
from queue_service.errors import ConfigFileError

from .adapters import Upstream


class RoutingError(ConfigFileError):
    """The routing file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamEntry(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    endpoint: str = Field(pattern=r"^/")
    base_url: str = Field(pattern=r"^https?://")
    queue: str | None = None
    model: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self


class QueueEntry(_Strict):
    name: str
    max_concurrency: int = Field(ge=1)


class RoutingFile(_Strict):
    upstream: list[UpstreamEntry] = []
    queue: list[QueueEntry] = []


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
        self._queue_limits = {q.name: Limit(f"queue:{q.name}", q.max_concurrency) for q in queues}

    @property
    def has_limits(self) -> bool:
        return bool(self._queue_limits) or any(
            entry.max_concurrency for _, entry in self._routes.values()
        )

    @classmethod
    def load(cls, path: str | None, default: Upstream) -> RoutingTable:
        if path is None:
            return cls(default)
        parsed = load_toml(path, RoutingFile, "QUEUE_UPSTREAMS_FILE", RoutingError)
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
        return UpstreamRoute(upstream, entry.timeout, self._limits(queue, entry))

    def _limits(self, queue: str, entry: UpstreamEntry | None) -> tuple[Limit, ...]:
        """The queue's limit first, then the upstream's: one order everywhere, no deadlock."""
        limits = []
        if queue in self._queue_limits:
            limits.append(self._queue_limits[queue])
        if entry is not None and entry.max_concurrency:
            limits.append(Limit(f"upstream:{entry.name}", entry.max_concurrency))
        return tuple(limits)


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
