"""What every Midjourney and Suno request goes through before its API looks at it: recorded,
its Bearer key checked, its JSON body read and, for a submit, its `mock` controls parsed and
the HTTP error they ask for answered; for a fetch, the tasks it asks for found, or the read
failure their submit's controls asked for (`ReadFaults`). Each API answers errors, and what
it found, in its own format."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from .config import MockConfig
from .controls import invalid_controls_message
from .recording import MockState
from .task_lifecycle import TaskControls

ErrorAnswer = Callable[[int, str, Mapping[str, str] | None], Response]
"""(HTTP status, message, extra headers) -> the error response in the API's format."""
C = TypeVar("C", bound=TaskControls)
T = TypeVar("T")


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


@dataclass(frozen=True, slots=True)
class Received:
    """An authorized request."""

    body: Any
    """Parsed JSON; the raw text when it is not JSON ("" for none)."""
    base_url: str
    """The mock's own URL (ends with `/`), for answers that link back to it."""


@dataclass(frozen=True, slots=True)
class Submitted(Generic[C]):
    """A submit that is to be answered normally (no HTTP error asked for)."""

    fields: dict[str, Any]
    """The body without its `mock` object: what the task is made of."""
    controls: C
    base_url: str


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """What a fetch asks for, to be answered in the API's envelope."""

    result: T
    """The task; for a batch fetch the known tasks among those asked, in the order asked."""
    base_url: str


@dataclass(slots=True)
class ReadFaults:
    """How reads of one task fail, as its submit's controls asked (`TaskControls.read_*`,
    `forget_after`)."""

    forget_at: float | None
    """time.monotonic() from when the upstream no longer knows the task."""
    status: int | None
    fail_times: int | None
    delay: float
    failed: int = 0

    @classmethod
    def of(cls, controls: TaskControls) -> ReadFaults | None:
        """The faults the controls ask for; None when they ask for none."""
        forget, delay = controls.forget_after, controls.read_delay or 0.0
        if forget is None and controls.read_status is None and not delay:
            return None
        forget_at = None if forget is None else time.monotonic() + forget
        return cls(forget_at, controls.read_status, controls.read_fail_times, delay)

    def forgotten(self) -> bool:
        return self.forget_at is not None and time.monotonic() >= self.forget_at

    def fails(self) -> bool:
        """Whether this read fails with `status` (counted against `fail_times`)."""
        if self.status is None:
            return False
        if self.fail_times is not None:
            if self.failed >= self.fail_times:
                return False
            self.failed += 1
        return True


@dataclass(frozen=True, slots=True)
class TaskRequests:
    """The gate of one task API."""

    config: MockConfig
    state: MockState
    error: ErrorAnswer
    """Answers every error in the API's format."""
    not_found: str
    """The 404 message for an unknown task; `{id}` stands for its id."""
    faults: dict[str, ReadFaults] = field(default_factory=dict)
    """Task id -> how reads of it fail (tasks whose submit asked for it)."""

    async def receive(self, request: Request, response_id: str) -> Received | Response:
        """Record the request; what it holds, or the 401 it gets for a wrong key."""
        recorded = await self.state.record(request, response_id)
        key = self.config.api_key
        if key is not None and recorded.headers.get("authorization") != f"Bearer {key}":
            return self.error(401, "Invalid API key.", None)
        return Received(recorded.body, str(request.base_url))

    async def json_object(self, request: Request, response_id: str) -> Received | Response:
        """`receive`, and a 400 unless the body is a JSON object."""
        received = await self.receive(request, response_id)
        if not isinstance(received, Response) and not isinstance(received.body, dict):
            return self.error(400, "The body must be a JSON object.", None)
        return received

    async def submit(
        self, request: Request, response_id: str, controls_type: type[C]
    ) -> Submitted[C] | Response:
        """`json_object`, then its controls: a 400 when they are invalid, the HTTP error they
        ask for (before anything else is looked at), or the submit to answer."""
        received = await self.json_object(request, response_id)
        if isinstance(received, Response):
            return received
        body: dict[str, Any] = received.body
        value = body.get("mock")
        try:
            controls = controls_type.model_validate({} if value is None else value)
        except ValidationError as exc:
            return self.error(400, invalid_controls_message(exc), None)
        if controls.status is not None and self.state.should_fail(controls):
            headers = controls.failure_headers()
            return self.error(controls.status, f"Mock error {controls.status}.", headers)
        faults = ReadFaults.of(controls)
        if faults is not None:
            self.faults[response_id] = faults
        fields = {name: value for name, value in body.items() if name != "mock"}
        return Submitted(fields, controls, received.base_url)

    async def fetch_many(
        self, request: Request, tasks: Mapping[str, T]
    ) -> Fetched[list[T]] | Response:
        """A batch fetch, `{"ids": [...]}`: the known tasks among `ids` (the unknown ones left
        out, as both upstreams do), or a 400 without such a list."""
        received = await self.json_object(request, "poll-" + secrets.token_hex(8))
        if isinstance(received, Response):
            return received
        ids = _id_list(received.body)
        if ids is None:
            return self.error(400, "`ids` must be a list of task ids.", None)
        failed = await self._read_fault(ids)
        if failed is not None:
            return failed
        known = [tasks[one] for one in ids if one in tasks and not self._forgotten(one)]
        return Fetched(known, received.base_url)

    async def fetch(self, request: Request, tasks: Mapping[str, T]) -> Fetched[T] | Response:
        """The task of the path's `{id}`, or a 404."""
        task_id = request.path_params["id"]
        received = await self.receive(request, task_id)
        if isinstance(received, Response):
            return received
        failed = await self._read_fault([task_id])
        if failed is not None:
            return failed
        task = tasks.get(task_id)
        if task is None or self._forgotten(task_id):
            return self.error(404, self.not_found.format(id=task_id), None)
        return Fetched(task, received.base_url)

    async def _read_fault(self, ids: list[str]) -> Response | None:
        """Wait as long as the read's tasks ask; the error one of them asks for, if any."""
        faults = [self.faults[one] for one in ids if one in self.faults]
        delay = max((fault.delay for fault in faults), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        for fault in faults:
            if fault.status is not None and fault.fails():
                return self.error(fault.status, f"Mock read error {fault.status}.", None)
        return None

    def _forgotten(self, task_id: str) -> bool:
        fault = self.faults.get(task_id)
        return fault is not None and fault.forgotten()


def _id_list(body: Any) -> list[str] | None:
    """The `ids` of a batch fetch body, or None when it has no list of strings there."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(one, str) for one in ids):
        return None
    return ids


def text(fields: Mapping[str, Any], name: str) -> str | None:
    """The field when it is a non-empty string."""
    value = fields.get(name)
    return value if isinstance(value, str) and value else None
