"""The service's settings, read from `QUEUE_*` environment variables at the edge only."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queue_service.models import QUEUE_NAME_PATTERN
from queue_service.outbound import IPNetwork, parse_networks

DAY = 24 * 3600


class Settings(BaseSettings):
    """Every tunable of the API and the workers; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="QUEUE_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="qs", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")

    upstream_url: str = "http://127.0.0.1:7860"
    upstream_api_key: str | None = None
    upstream_timeout: float = Field(default=600.0, gt=0)
    upstreams_file: str | None = None
    schedule_file: str | None = None
    upstream_auth: Literal["server", "passthrough"] = "server"
    secret_key: str | None = None
    upstream_max_retries: int = Field(default=3, ge=0)
    upstream_retry_backoff: float = Field(default=0.5, gt=0)
    upstream_retry_backoff_max: float = Field(default=30.0, gt=0)
    limit_lease_ttl: float = Field(default=30.0, gt=0)
    max_stream_events: int = Field(default=100_000, ge=1)
    max_stream_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_result_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    stream_client_buffer_bytes: int = Field(default=1024 * 1024, ge=1024)

    api_keys: str | None = None
    api_keys_file: str | None = None
    instance: int | None = Field(default=None, ge=0, le=9999)

    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_json_depth: int = Field(default=32, ge=2, le=200)
    max_timeout: int = Field(default=7 * DAY, gt=0)
    blocking_timeout: int = Field(default=300, gt=0)
    callback_timeout: int = Field(default=DAY, gt=0)
    result_retention: int = Field(default=DAY, gt=0)
    file_retention: int = Field(default=30 * DAY, gt=0)
    usage_retention: int = Field(default=35 * DAY, gt=0)
    batch_webhook_url: str | None = None
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0)

    concurrency: int = Field(default=16, ge=1)
    online_reserved_slots: int = Field(default=2, ge=0)
    registry_refresh_interval: float = Field(default=1.0, gt=0)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    visibility_timeout: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    task_poll_interval: float = Field(default=2.0, gt=0)
    task_poll_max_interval: float = Field(default=30.0, gt=0)
    task_poll_batch: int = Field(default=100, ge=1, le=1000)

    callback_allowed_networks: str | None = None
    callback_secret: str | None = None
    callback_request_timeout: float = Field(default=10.0, gt=0)
    callback_max_attempts: int = Field(default=40, ge=1)
    callback_backoff: float = Field(default=1.0, gt=0)
    callback_backoff_max: float = Field(default=3600.0, gt=0)
    callback_retry_horizon: float = Field(default=DAY, gt=0)
    dead_letter_retention: int = Field(default=7 * DAY, gt=0)
    max_waiting: int = Field(default=100_000, ge=0)
    default_queue: str = Field(default="default", pattern=QUEUE_NAME_PATTERN)
    max_queues: int = Field(default=10_000, ge=0)
    queue_idle_ttl: int = Field(default=3600, ge=0)

    metrics_token: str | None = None
    metrics_top_queues: int = Field(default=50, ge=1)
    metrics_top_models: int = Field(default=50, ge=1)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _passthrough_needs_a_secret(self) -> Settings:
        if self.upstream_auth == "passthrough" and not self.secret_key:
            raise ValueError("QUEUE_UPSTREAM_AUTH=passthrough needs QUEUE_SECRET_KEY")
        return self

    @field_validator("callback_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str | None) -> str | None:
        parse_networks(value)  # a bad CIDR is refused at start-up, naming the entry
        return value

    @property
    def redis_location(self) -> str:
        """Where Redis is, for logs: the URL without its credentials."""
        parts = urlsplit(self.redis_url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=host))

    @property
    def allowed_callback_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.callback_allowed_networks)

    @property
    def api_key_tenants(self) -> dict[str, str]:
        """Map each accepted bearer key to its tenant (`key` alone is tenant `default`)."""
        tenants: dict[str, str] = {}
        for entry in (self.api_keys or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            tenant, sep, key = entry.rpartition(":")
            tenants[key] = tenant if sep and tenant else "default"
        return tenants
