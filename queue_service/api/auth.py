"""Bearer-key authentication: which principal (tenant, allowed queues, rate) a request is.

Keys come from `QUEUE_API_KEYS` (`key` or `tenant:key`, comma-separated) and from the keys
file `QUEUE_API_KEYS_FILE` (TOML), which can also restrict a key to some queues, give it a
rate limit and mark it admin:

    [[key]]
    key_env = "ACME_KEY"     # or key = "..."
    tenant = "acme"
    queues = ["chat", "batch"]
    rate = 20                # requests per second, shared by every API process
    burst = 40
    weight = 2               # the tenant's share of the workers (default 1)
    rpm = 300                # the tenant's upstream requests / tokens per minute (optional)
    tpm = 100000
    admin = false
    default_queue = "chat"   # for SDK calls that send no X-Queue header
    batch_webhook_url = "https://example.com/batches"   # its batches announce their end here
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request

from queue_service.config_files import load_toml
from queue_service.errors import BadRequest, ConfigFileError, Forbidden, Unauthorized
from queue_service.models import NO_AUTH_TENANT, QUEUE_NAME_PATTERN, HttpUrlText


class KeyFileError(ConfigFileError):
    """The keys file is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: their tenant and what their key allows."""

    tenant: str
    key_id: str
    """A digest of the key: safe to log and to name its rate bucket with."""
    queues: frozenset[str] | None = None
    rate: float | None = None
    burst: int | None = None
    admin: bool = False
    default_queue: str | None = None
    """The queue of its calls through the SDK-compatible routes that name none (`X-Queue`)."""
    batch_webhook_url: str | None = None
    """Where its batches announce their end (else QUEUE_BATCH_WEBHOOK_URL)."""

    def check_queue(self, queue: str) -> None:
        if self.queues is not None and queue not in self.queues:
            raise Forbidden(f"this API key may not use queue {queue!r}")


OPEN = Principal(NO_AUTH_TENANT, "open", admin=True)


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(default=None, min_length=8)
    key_env: str | None = None
    tenant: str = Field(default="default", min_length=1, max_length=64)
    queues: list[str] | None = None
    rate: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)
    admin: bool = False
    weight: float = Field(default=1.0, gt=0, le=1000)
    """The tenant's share of the workers beside other tenants with work waiting."""
    rpm: int | None = Field(default=None, ge=1)
    """Upstream requests per minute the tenant's jobs may make, across every worker."""
    tpm: int | None = Field(default=None, ge=1)
    """Upstream tokens per minute the tenant's jobs may use (estimated, then settled)."""
    default_queue: str | None = Field(default=None, pattern=QUEUE_NAME_PATTERN)
    batch_webhook_url: HttpUrlText | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> KeyEntry:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of key and key_env")
        return self


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: list[KeyEntry] = []


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TenantTerms:
    """What the keys file gives a tenant (over its keys: the highest of each)."""

    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None

    def joined(self, entry: KeyEntry) -> TenantTerms:
        return TenantTerms(
            max(self.weight, entry.weight), _most(self.rpm, entry.rpm), _most(self.tpm, entry.tpm)
        )


def _most(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def load_key_file(path: str) -> tuple[list[tuple[str, Principal]], dict[str, TenantTerms]]:
    """The keys with their principals, and each tenant's terms (weight, budgets)."""
    parsed = load_toml(path, KeyFile, "QUEUE_API_KEYS_FILE", KeyFileError)
    tenants: dict[str, TenantTerms] = {}
    for entry in parsed.key:
        tenants[entry.tenant] = tenants.get(entry.tenant, TenantTerms(0.0)).joined(entry)
    keys = []
    for entry in parsed.key:
        key = entry.key if entry.key_env is None else os.environ.get(entry.key_env)
        if not key:
            raise KeyFileError(
                f"QUEUE_API_KEYS_FILE: environment variable {entry.key_env} is not set"
            )
        queues = frozenset(entry.queues) if entry.queues is not None else None
        burst = entry.burst or (max(int(entry.rate), 1) if entry.rate else None)
        principal = Principal(
            entry.tenant,
            _key_id(key),
            queues,
            entry.rate,
            burst,
            entry.admin,
            entry.default_queue,
            entry.batch_webhook_url,
        )
        keys.append((key, principal))
    return keys, tenants


class Authenticator:
    """Maps `Authorization: Bearer <key>` (or `x-api-key: <key>`) to a principal; with no keys
    configured, all is open."""

    def __init__(self, key_tenants: dict[str, str], key_file: str | None = None) -> None:
        entries = [(key, Principal(tenant, _key_id(key))) for key, tenant in key_tenants.items()]
        self.tenants: dict[str, TenantTerms] = {}
        """The terms of the tenants the keys file names (others: weight 1, no budgets)."""
        if key_file is not None:
            from_file, self.tenants = load_key_file(key_file)
            entries += from_file
        self._keys = [(key.encode(), principal) for key, principal in entries]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def principal(self, request: Request) -> Principal:
        if not self._keys:
            return OPEN
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            presented = request.headers.get("x-api-key", "")  # as Anthropic's SDK sends it
        if not presented.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        candidate = presented.strip().encode()
        found: Principal | None = None
        for key, principal in self._keys:  # compare against every key: constant time
            if hmac.compare_digest(key, candidate):
                found = principal
        if found is None:
            raise Unauthorized("invalid API key")
        return found


UPSTREAM_KEY_HEADER = "x-upstream-api-key"


def caller_upstream_key(request: Request) -> str:
    """The key the caller wants sent upstream: `X-Upstream-Api-Key`, else its bearer key."""
    explicit = request.headers.get(UPSTREAM_KEY_HEADER, "").strip()
    if explicit:
        return _header_text(explicit, UPSTREAM_KEY_HEADER)
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return _header_text(bearer.strip(), "authorization")
    raise Unauthorized(
        "QUEUE_UPSTREAM_AUTH=passthrough: send your upstream key as "
        f"'{UPSTREAM_KEY_HEADER}' or 'Authorization: Bearer <key>'"
    )


def _header_text(key: str, header: str) -> str:
    """The key, if it can travel upstream as header text (visible ASCII); else a 400 that
    names the header but never echoes the key."""
    if all("!" <= char <= "~" for char in key):
        return key
    raise BadRequest(f"the key in '{header}' must be visible ASCII characters only")
