"""What both clients share, free of I/O: the requests they send and how answers are read."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from .errors import (
    BY_STATUS,
    ConnectionFailed,
    QueueClientError,
    QueueFull,
    UpstreamError,
    WaitTimeout,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
TASK_ID_HEADER = "x-task-id"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "timeout", "cancelled"})
_JSON_HEADERS = {"content-type": "application/json"}

Mode = Literal["callback", "blocking", "streaming"]


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the service."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    waits: bool = False
    """Blocking or streaming: no read timeout (the service ends it at the job's timeout)."""
    idempotency_key: str | None = None
    """Sent as `Idempotency-Key`: the same put sent again creates no second job."""


@dataclass(frozen=True, slots=True)
class BlockingResponse:
    """The upstream's answer to a blocking job."""

    status_code: int
    body: Any
    """JSON-decoded when the upstream answered JSON, else its text."""
    task_id: str


def client_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    """Keyword arguments for `httpx.Client` / `httpx.AsyncClient`."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def put_call(
    queue: str,
    endpoint: str,
    data: dict[str, Any],
    *,
    level: int,
    mode: Mode,
    callback_url: str | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> Call:
    body: dict[str, Any] = {
        "queue": queue,
        "endpoint": endpoint,
        "level": level,
        "data": data,
        "response_mode": mode,
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    if timeout is not None:
        body["timeout"] = timeout
    return Call("POST", "/v1/queue/put", body, mode != "callback", idempotency_key)


def get_call(task_id: str) -> Call:
    return Call("GET", f"/v1/queue/{task_id}")


def cancel_call(task_id: str) -> Call:
    return Call("POST", f"/v1/queue/{task_id}/cancel")


def build_request(http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    content = None if call.body is None else orjson.dumps(call.body)
    timeout = http.timeout
    if call.waits:
        timeout = httpx.Timeout(
            connect=timeout.connect, read=None, write=timeout.write, pool=timeout.pool
        )
    headers = dict(_JSON_HEADERS) if content is not None else {}
    if call.idempotency_key is not None:
        headers["idempotency-key"] = call.idempotency_key
    return http.build_request(
        call.method, call.path, content=content, headers=headers, timeout=timeout
    )


@contextlib.contextmanager
def transport_errors() -> Iterator[None]:
    """httpx's transport failures as ConnectionFailed."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


def decode(content: bytes | str) -> Any:
    """JSON-decoded when it is JSON, else the text."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode(errors="replace") if isinstance(content, bytes) else content


def is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("text/event-stream")


def _is_envelope(body: Any) -> bool:
    return isinstance(body, dict) and {"code", "timestamp"} <= body.keys()


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def service_error(response: httpx.Response, body: Any) -> QueueClientError:
    """The typed error for a failure the service itself reported."""
    status = response.status_code
    message = str(body["message"]) if _is_envelope(body) and "message" in body else str(body)
    task_id = response.headers.get(TASK_ID_HEADER)
    text = f"HTTP {status}: {message}"
    kind = BY_STATUS.get(status, QueueClientError)
    if kind is QueueFull:
        return QueueFull(
            text, status_code=status, task_id=task_id, retry_after=_retry_after(response)
        )
    return kind(text, status_code=status, task_id=task_id)


def envelope_data(response: httpx.Response) -> Any:
    """The `data` of a `{"code", "timestamp", "data"}` answer; a typed error otherwise."""
    body = decode(response.content)
    if not response.is_success:
        raise service_error(response, body)
    if not _is_envelope(body) or "data" not in body:
        raise QueueClientError(
            f"unexpected answer from the service: {str(body)[:200]}",
            status_code=response.status_code,
        )
    return body["data"]


def blocking_result(response: httpx.Response) -> BlockingResponse:
    """A read blocking answer: the upstream's 2xx, else UpstreamError or the service's error."""
    body = decode(response.content)
    task_id = response.headers.get(TASK_ID_HEADER)
    if task_id is None or _is_envelope(body):
        raise service_error(response, body)
    if not response.is_success:
        raise UpstreamError(
            f"the upstream answered HTTP {response.status_code}: {str(body)[:200]}",
            status_code=response.status_code,
            task_id=task_id,
            body=body,
        )
    return BlockingResponse(response.status_code, body, task_id)


def task_id_of(data: Any) -> str:
    if not isinstance(data, str):
        raise QueueClientError(f"expected a task id from put, got {data!r}")
    return data


def task_view(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise QueueClientError(f"expected a task view, got {data!r}")
    return data


def is_terminal(view: dict[str, Any]) -> bool:
    return view.get("status") in TERMINAL_STATUSES


class Deadline:
    """How long `wait()` may still sleep between two looks at a task."""

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def next_sleep(self, poll: float) -> float:
        """`poll`, or what is left of the timeout; WaitTimeout once it has run out."""
        if self._end is None:
            return poll
        left = self._end - time.monotonic()
        if left <= 0:
            raise WaitTimeout(
                f"task {self.task_id} did not finish within {self.timeout:g}s",
                task_id=self.task_id,
            )
        return min(poll, left)
