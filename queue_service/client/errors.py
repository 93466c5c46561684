"""The client's one exception tree.

QueueClientError                 anything the client reports (`status_code`, `task_id` when known)
├── BadRequest          400      invalid input (also 413 too large, 415 not JSON)
├── Unauthorized        401      missing or wrong API key
├── NotFound            404      unknown task (or another tenant's)
├── RequestTimeout      408      the job did not finish within its timeout (it was cancelled)
├── Conflict            409      e.g. cancelling a finished task
├── QueueFull           429      the queue is full or a rate limit hit: retry after `retry_after`
├── ServiceUnavailable  503      the service cannot reach its store
├── ConnectionFailed             the service could not be reached at all
├── UpstreamError                blocking/streaming: the upstream's non-2xx answer (`body`)
├── StreamError                  an `event: error` in a stream (`kind`, `body`)
└── WaitTimeout                  `wait()` gave up before the task finished (also a TimeoutError)
"""

from __future__ import annotations

from typing import Any


class QueueClientError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self, message: str, *, status_code: int | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.task_id = task_id


class BadRequest(QueueClientError):
    pass


class Unauthorized(QueueClientError):
    pass


class NotFound(QueueClientError):
    pass


class RequestTimeout(QueueClientError):
    pass


class Conflict(QueueClientError):
    pass


class QueueFull(QueueClientError):
    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        task_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, task_id=task_id)
        self.retry_after = retry_after


class ServiceUnavailable(QueueClientError):
    pass


class ConnectionFailed(QueueClientError):
    pass


class UpstreamError(QueueClientError):
    def __init__(self, message: str, *, status_code: int, task_id: str | None, body: Any) -> None:
        super().__init__(message, status_code=status_code, task_id=task_id)
        self.body = body


class StreamError(QueueClientError):
    def __init__(self, message: str, *, kind: str, body: Any, task_id: str | None) -> None:
        super().__init__(message, task_id=task_id)
        self.kind = kind
        self.body = body


class WaitTimeout(QueueClientError, TimeoutError):
    pass


BY_STATUS: dict[int, type[QueueClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    429: QueueFull,
    503: ServiceUnavailable,
}
