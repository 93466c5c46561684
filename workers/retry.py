"""When to try an upstream again, and how long its `Retry-After` asks to wait (the delay
itself is `queue_service.timing.backoff`)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retryable_status(status_code: int) -> bool:
    """429 and 5xx are worth another try; other 4xx are the request's own fault."""
    return status_code == 429 or status_code >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
