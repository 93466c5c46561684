"""What the mock saw: requests received, responses abandoned, `fail_times` counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request

from .controls import FailureControls


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: Any
    """Parsed JSON (the raw text when it is not JSON)."""
    received_at: float
    """time.time() on arrival."""
    response_id: str
    """The `id` of the response this request got or would have got (see mock_disconnects)."""


@dataclass(slots=True)
class MockState:
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    """Response ids whose client went away before the response was fully sent."""
    fail_counts: dict[str, int] = field(default_factory=dict)
    """Failures answered so far per `mock.key`, for `fail_times`."""

    async def record(self, request: Request, response_id: str) -> RecordedRequest:
        """Read and record a request to a JSON API, which gets (or would get) the response
        `response_id`; what was recorded. The upload routes record their multipart forms
        themselves."""
        received_at = time.time()
        raw = await request.body()
        body: Any
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        recorded = RecordedRequest(
            request.url.path, dict(request.headers), body, received_at, response_id
        )
        self.requests.append(recorded)
        return recorded

    def should_fail(self, controls: FailureControls) -> bool:
        """Whether a request carrying `status` gets its error this time."""
        if controls.fail_times is None:
            return True
        failed = self.fail_counts.get(controls.key, 0)
        if failed >= controls.fail_times:
            return False
        self.fail_counts[controls.key] = failed + 1
        return True

    def reset(self) -> None:
        """Clear in place: app.state holds these very containers."""
        self.requests.clear()
        self.disconnects.clear()
        self.fail_counts.clear()
