"""The service's one exception tree; `api/app.py` turns it into HTTP answers in one place.

QueueServiceError                  base: a message, an HTTP status and extra headers
├── BadRequest (400)               invalid input
│   └── UnsafeDestination          a callback URL that may not be called (SSRF rules)
├── Unauthorized (401)             no key, or an unknown one
├── Forbidden (403)                the key may not do this
├── TaskNotFound (404)             no such task or queue (for this tenant)
├── RequestTimeout (408)           a waited-for job did not finish within its timeout
├── Conflict (409)                 e.g. cancelling a finished task
│   └── TooManyQueues              a new queue would pass QUEUE_MAX_QUEUES
├── LengthRequired (411)           an upload without Content-Length
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── TooManyRequests (429)          a key's rate limit (Retry-After)
│   └── QueueFull                  a queue level holds its most waiting jobs
├── ClientGone (499)               the client left while waiting (its job is cancelled)
│   └── SlowReader                 a streaming client read too slowly (its job is cancelled)
├── ServiceUnavailable (503)       the store (Redis) is unreachable
│   ├── HubDisconnected            the results connection dropped while a request waited
│   ├── StaleSubmission            the queue's id changed under a put (Redis lost its data)
│   └── StreamsLost                a worker read a level stream that is gone (likewise)
└── ConfigFileError                a keys, routing or schedule file is wrong (start-up only)
"""

from __future__ import annotations


class QueueServiceError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self._headers = headers or {}

    def headers(self) -> dict[str, str]:
        """Response headers the answer carries (e.g. Retry-After, X-Task-Id)."""
        return self._headers


class BadRequest(QueueServiceError):
    status_code = 400


class UnsafeDestination(BadRequest):
    """The URL's host is, or resolves to, an address callbacks may not go to."""


class Unauthorized(QueueServiceError):
    status_code = 401


class Forbidden(QueueServiceError):
    status_code = 403


class TaskNotFound(QueueServiceError):
    status_code = 404


class RequestTimeout(QueueServiceError):
    status_code = 408


class Conflict(QueueServiceError):
    status_code = 409


class TooManyQueues(Conflict):
    pass


class LengthRequired(QueueServiceError):
    status_code = 411


class PayloadTooLarge(QueueServiceError):
    status_code = 413


class UnsupportedMediaType(QueueServiceError):
    status_code = 415


class TooManyRequests(QueueServiceError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})
        self.retry_after = retry_after


class QueueFull(TooManyRequests):
    pass


class ClientGone(QueueServiceError):
    """The client closed its connection while waiting; answered with an empty 499."""

    status_code = 499  # nginx's "client closed request"


class SlowReader(ClientGone):
    """A streaming client left more unread events waiting than it may: its stream is ended
    and its job cancelled."""


class ServiceUnavailable(QueueServiceError):
    status_code = 503


class HubDisconnected(ServiceUnavailable):
    """The pub/sub connection dropped while a request waited on it."""


class StaleSubmission(ServiceUnavailable):
    """A put's task id no longer fits the store (its queue was registered anew under another
    id, or the id was taken): prepare the job again. Puts retry this once by themselves."""


class StreamsLost(ServiceUnavailable):
    """A level stream or its consumer group is gone (Redis lost its data): the worker
    looks at the registry again and recreates what it reads."""


class ConfigFileError(QueueServiceError):
    """A configuration file is missing, unreadable or invalid; the message says where."""
