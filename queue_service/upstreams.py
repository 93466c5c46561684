"""The upstream routing file (`QUEUE_UPSTREAMS_FILE`, TOML): its schema, read by the workers
(which upstream serves a job: `workers/routing.py`) and by the API (the models it names,
for `GET /v1/models`). The file's format is documented in `workers/routing.py`."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from queue_service.config_files import load_toml
from queue_service.errors import ConfigFileError


class RoutingError(ConfigFileError):
    """The routing file is missing, unreadable or invalid."""


_SERVICE_SET_FIELDS = frozenset({"model", "stream", "service_tier"})
"""Request fields the service itself reads or writes: no priority goes there."""


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
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute the upstream allows this route, across every worker."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per minute (prompt + completion, estimated before and settled after)."""
    default_max_tokens: int = Field(default=1024, ge=1)
    """The completion tokens a job is expected to use when it names no `max_tokens`."""
    priority_field: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    priority_online: StrictInt = 0
    priority_offline: StrictInt = 1
    offline_service_tier: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    tier_fallback_before_deadline: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self

    @model_validator(mode="after")
    def _level_hints_consistent(self) -> Self:
        """The keys that only shape `priority_field` or `offline_service_tier` are refused
        without it, rather than silently doing nothing."""
        given = self.model_fields_set
        if self.priority_field is None and given & {"priority_online", "priority_offline"}:
            raise ValueError("priority_online and priority_offline need priority_field")
        if self.priority_field in _SERVICE_SET_FIELDS:
            field = self.priority_field
            raise ValueError(f"priority_field cannot be {field!r}: the service itself uses it")
        if self.priority_online == self.priority_offline:
            raise ValueError("priority_online and priority_offline must differ")
        if self.offline_service_tier is None and "tier_fallback_before_deadline" in given:
            raise ValueError("tier_fallback_before_deadline needs offline_service_tier")
        return self


class QueueEntry(_Strict):
    name: str
    max_concurrency: int | None = Field(default=None, ge=1)
    weight: float = Field(default=1.0, gt=0, le=1000)
    """The queue's share of its tenants' turns beside their other queues with work."""


class RoutingFile(_Strict):
    upstream: list[UpstreamEntry] = []
    queue: list[QueueEntry] = []


def load_routing_file(path: str) -> RoutingFile:
    return load_toml(path, RoutingFile, "QUEUE_UPSTREAMS_FILE", RoutingError)
