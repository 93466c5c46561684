"""What a job is, wherever it is: the put body (`PutRequest`), its response mode, the task
`Status` and `CallbackState` with their terminal sets, and the public view of a task."""

from __future__ import annotations

import enum
import math
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

from queue_service.endpoints import unqueueable

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
    NOT_SENT = "not_sent"
    """The job was cancelled before it had an outcome: no callback will be sent."""


SETTLED_CALLBACK_STATES = frozenset(
    {CallbackState.DELIVERED, CallbackState.FAILED, CallbackState.NOT_SENT}
)


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
    upstream_task_id: NotRequired[str]
    """Jobs on task APIs (Midjourney, Suno), once submitted: the upstream's task id ..."""
    progress: NotRequired[str | None]
    """... its progress as the upstream words it ("45%") ..."""
    upstream_task: NotRequired[Any]
    """... and the upstream task object as last read."""


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry a user name or password (userinfo)")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ValueError("has an invalid port (must be a number from 1 to 65535)") from None
    if parts.port == 0:
        raise ValueError("has an invalid port (must be a number from 1 to 65535)")
    return url


HttpUrlText = Annotated[str, Field(max_length=2048), AfterValidator(_check_http_url)]


FILE_REF = "$file"
"""A job's `data` names a stored file (endpoints that take files) as `{"$file": "<id>"}`."""


def file_ref(value: Any) -> str | None:
    """The file id `value` refers to, if it is a file reference."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(FILE_REF), str):
        return str(value[FILE_REF])
    return None


INT_RANGE = (-(2**63), 2**64 - 1)
"""Integers JSON carries here: 64-bit, as orjson stores them and upstreams read them."""


def _json_problem(value: Any, max_depth: int) -> str | None:
    """Why a JSON value may not be queued, or None: nesting deeper than `max_depth`, numbers
    that RFC 8259 JSON has no room for (NaN, Infinity, 1e400) or beyond 64-bit integers.
    Iterative: no recursion limit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"nests deeper than {max_depth} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds a number JSON cannot carry (NaN, Infinity, or one too large like 1e400)"
        elif isinstance(item, int) and not INT_RANGE[0] <= item <= INT_RANGE[1]:
            return "holds an integer beyond 64 bits; send it as a string"
    return None


class PutContext(BaseModel):
    """What validation of a put needs to know about this deployment."""

    endpoints: frozenset[str]
    max_timeout: int
    max_depth: int = 32
    callback_required: bool = True
    """False for jobs whose results are collected another way (batch lines)."""


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
        why = unqueueable(endpoint)
        if why is not None:
            raise ValueError(why)
        context = info.context
        if isinstance(context, PutContext) and endpoint not in context.endpoints:
            served = ", ".join(sorted(context.endpoints))
            raise ValueError(f"endpoint {endpoint!r} is not served; served endpoints: {served}")
        return endpoint

    @field_validator("data")
    @classmethod
    def _data_is_plain_json(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        context = info.context
        max_depth = context.max_depth if isinstance(context, PutContext) else 32
        problem = _json_problem(data, max_depth)
        if problem is not None:
            raise ValueError(problem)
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
    def _mode_fits(self, info: ValidationInfo) -> PutRequest:
        if self.response_mode is ResponseMode.CALLBACK:
            required = not isinstance(info.context, PutContext) or info.context.callback_required
            if self.callback_url is None and required:
                raise ValueError("callback_url is required when response_mode is callback")
        elif self.level != 0:
            raise ValueError(
                f"response_mode {self.response_mode.value} is only available on level 0 (online)"
            )
        return self
