"""What a job is, wherever it is: the put body (`PutRequest`), its response mode, the task
`Status` and `CallbackState` with their terminal sets, and the public view of a task."""

from __future__ import annotations

import enum
from typing import Annotated, Any, NotRequired
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NO_AUTH_TENANT = ""
"""The tenant of requests when API keys are off, and of scheduled jobs."""


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED})


class CallbackState(enum.StrEnum):
    """Where a callback job's delivery stands (`pending` until the first attempt)."""

    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up on: a dead letter, until re-delivered."""


SETTLED_CALLBACK_STATES = frozenset({CallbackState.DELIVERED, CallbackState.FAILED})


class ResponseMode(enum.StrEnum):
    CALLBACK = "callback"
    BLOCKING = "blocking"
    STREAMING = "streaming"

    @property
    def letter(self) -> str:
        """The mode's letter in a task id: C, B or S."""
        return self.value[0].upper()


class CallbackView(TypedDict):
    url: str
    status: CallbackState
    attempts: int
    last_error: str | None


class TaskView(TypedDict):
    """What `GET /v1/queue/{task_id}` shows of a task (never its tenant)."""

    task_id: str
    queue: str
    level: int
    response_mode: ResponseMode
    endpoint: str
    status: Status
    created_at: int
    deadline: int
    started_at: int | None
    finished_at: int | None
    attempts: int
    status_code: int | None
    result: Any
    callback: NotRequired[CallbackView]
    """Callback jobs only."""


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


HttpUrlText = Annotated[str, Field(max_length=2048), AfterValidator(_check_http_url)]


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


class PutContext(BaseModel):
    """What validation of a put needs to know about this deployment."""

    endpoints: frozenset[str]
    max_timeout: int
    max_depth: int = 32


class PutRequest(BaseModel):
    """The body of `POST /v1/queue/put` (seed 000)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    queue: Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)]
    endpoint: str
    level: StrictInt
    data: dict[str, Any]
    response_mode: ResponseMode = ResponseMode.CALLBACK
    callback_url: HttpUrlText | None = None
    timeout: StrictInt | None = None

    @field_validator("level")
    @classmethod
    def _level_is_online_or_offline(cls, level: int) -> int:
        if level not in (0, 1):
            raise ValueError("level must be 0 (online) or 1 (offline)")
        return level

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_served(cls, endpoint: str, info: ValidationInfo) -> str:
        context = info.context
        if isinstance(context, PutContext) and endpoint not in context.endpoints:
            served = ", ".join(sorted(context.endpoints))
            raise ValueError(f"endpoint {endpoint!r} is not served; served endpoints: {served}")
        return endpoint

    @field_validator("data")
    @classmethod
    def _data_is_not_too_deep(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        context = info.context
        if isinstance(context, PutContext) and _depth(data) > context.max_depth:
            raise ValueError(f"nests deeper than {context.max_depth} levels")
        return data

    @field_validator("timeout")
    @classmethod
    def _timeout_is_sane(cls, timeout: int | None, info: ValidationInfo) -> int | None:
        if timeout is None:
            return None
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        context = info.context
        if isinstance(context, PutContext) and timeout > context.max_timeout:
            raise ValueError(f"timeout must be at most {context.max_timeout} seconds")
        return timeout

    @model_validator(mode="after")
    def _mode_fits(self) -> PutRequest:
        if self.response_mode is ResponseMode.CALLBACK:
            if self.callback_url is None:
                raise ValueError("callback_url is required when response_mode is callback")
        elif self.level != 0:
            raise ValueError(
                f"response_mode {self.response_mode.value} is only available on level 0 (online)"
            )
        return self
