"""The upstream routing file (`QUEUE_UPSTREAMS_FILE`, TOML): its schema, read by the workers
(which upstream serves a job: `workers/routing.py`) and by the API (the models it names,
for `GET /v1/models`). The file's format is documented in `workers/routing.py`."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from queue_service.config_files import load_toml
from queue_service.errors import ConfigFileError


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


def load_routing_file(path: str) -> RoutingFile:
    return load_toml(path, RoutingFile, "QUEUE_UPSTREAMS_FILE", RoutingError)
