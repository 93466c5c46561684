"""The service's one exception tree; `app.py` maps it to HTTP in one place.

QueueServiceError
├── BadRequest (400)          invalid input
│   └── InvalidJSON           body is not JSON / not an object
├── Unauthorized (401)
├── TaskNotFound (404)
├── Conflict (409)            e.g. cancelling a finished task
├── RequestTimeout (408)
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── NotImplementedMode (501)
└── ServiceUnavailable (503)  Redis unreachable
"""

from __future__ import annotations


class QueueServiceError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str] | None:
        """Extra response headers (e.g. Retry-After)."""
        return None


class BadRequest(QueueServiceError):
    status_code = 400


class InvalidJSON(BadRequest):
    pass


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


class PayloadTooLarge(QueueServiceError):
    status_code = 413


class TooManyRequests(QueueServiceError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class QueueFull(TooManyRequests):
    pass


class UnsupportedMediaType(QueueServiceError):
    status_code = 415


class ServiceUnavailable(QueueServiceError):
    status_code = 503
