"""A task as stored in Redis (`TaskRecord`) and the outcome of running it (`Outcome`).

This module owns the task hash's layout: `to_hash`, `outcome_fields` and `callback_fields`
write it, `from_hash` reads it. The Lua scripts touch a few fields by name (`status`,
`entry`, `deadline`, `attempts`, `started_at`, `worker`, `finished_at`, `result`,
`status_code`, `content_type`, `upstream_key`); their headers say which. A task followed
upstream (see following.py) also carries its upstream task's id, latest object and progress.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from queue_service.models import CallbackState, CallbackView, ResponseMode, Status, TaskView

from .lua import Fields

UPSTREAM_KEY_FIELD = "upstream_key"
"""A caller's own upstream key (encrypted), kept only while its job runs."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended: its status and the upstream's (or our) response."""

    status: Status
    status_code: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def error(cls, status: Status, status_code: int, message: str, kind: str) -> Outcome:
        body = orjson.dumps({"error": {"message": message, "type": kind}})
        return cls(status, status_code, body)

    def body_value(self) -> Any:
        """The body as JSON when it is JSON, else base64 text with its content type."""
        return decode_body(self.body, self.content_type)

    def fields(self, finished_at: int) -> Fields:
        """The task hash fields that record this outcome."""
        return {
            "status": self.status.value,
            "status_code": self.status_code,
            "content_type": self.content_type,
            "result": self.body,
            "finished_at": finished_at,
        }


def decode_body(body: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    if content_type.startswith("text/"):
        return body.decode("utf-8", errors="replace")
    return {"content_type": content_type, "base64": base64.b64encode(body).decode()}


def callback_fields(state: CallbackState, attempts: int, error: str | None) -> Fields:
    """The task hash fields that record a callback delivery attempt."""
    return {
        "callback_status": state.value,
        "callback_attempts": attempts,
        "callback_last_error": error or "",
    }


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode()


def _int(raw: dict[bytes, bytes], name: str) -> int | None:
    value = raw.get(name.encode())
    return int(value) if value else None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    queue: str
    level: int
    mode: ResponseMode
    endpoint: str
    data: bytes
    callback_url: str
    tenant: str
    status: Status
    created_at: int
    deadline: int
    attempts: int = 0
    entry: str = ""
    started_at: int | None = None
    finished_at: int | None = None
    outcome: Outcome | None = None
    callback_status: CallbackState = CallbackState.PENDING
    callback_attempts: int = 0
    callback_last_error: str = ""
    upstream_task_id: str = ""
    """The upstream's own id of the task running the job (Midjourney, Suno), once submitted."""
    upstream_task: bytes = b""
    """The upstream task object as last read (JSON)."""
    progress: str = ""
    progress_at: int | None = None
    """When the upstream task object last changed (ms)."""

    def to_hash(self) -> Fields:
        """The hash of a new record (the stream entry id is added by `put.lua`)."""
        fields: Fields = {
            "task_id": self.task_id,
            "queue": self.queue,
            "level": self.level,
            "mode": self.mode.value,
            "endpoint": self.endpoint,
            "data": self.data,
            "callback_url": self.callback_url,
            "tenant": self.tenant,
            "status": self.status.value,
            "created_at": self.created_at,
            "deadline": self.deadline,
            "attempts": self.attempts,
        }
        if self.started_at is not None:
            fields["started_at"] = self.started_at
        if self.outcome is not None:
            fields |= self.outcome.fields(self.finished_at or self.created_at)
        if self.callback_attempts:
            fields |= callback_fields(
                self.callback_status, self.callback_attempts, self.callback_last_error
            )
        return fields

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> TaskRecord:
        status = Status(_text(raw, "status"))
        status_code = _int(raw, "status_code")
        outcome = None
        if status_code is not None:
            outcome = Outcome(
                status, status_code, raw.get(b"result", b""), _text(raw, "content_type")
            )
        return cls(
            task_id=_text(raw, "task_id"),
            queue=_text(raw, "queue"),
            level=int(raw[b"level"]),
            mode=ResponseMode(_text(raw, "mode")),
            endpoint=_text(raw, "endpoint"),
            data=raw.get(b"data", b"{}"),
            callback_url=_text(raw, "callback_url"),
            tenant=_text(raw, "tenant"),
            status=status,
            created_at=int(raw[b"created_at"]),
            deadline=int(raw[b"deadline"]),
            attempts=_int(raw, "attempts") or 0,
            entry=_text(raw, "entry"),
            started_at=_int(raw, "started_at"),
            finished_at=_int(raw, "finished_at"),
            outcome=outcome,
            callback_status=CallbackState(_text(raw, "callback_status") or CallbackState.PENDING),
            callback_attempts=_int(raw, "callback_attempts") or 0,
            callback_last_error=_text(raw, "callback_last_error"),
            upstream_task_id=_text(raw, "upstream_task_id"),
            upstream_task=raw.get(b"upstream_task", b""),
            progress=_text(raw, "progress"),
            progress_at=_int(raw, "progress_at"),
        )

    def public_view(self) -> TaskView:
        """What `GET /v1/queue/{task_id}` shows (never the tenant)."""
        view = TaskView(
            task_id=self.task_id,
            queue=self.queue,
            level=self.level,
            response_mode=self.mode,
            endpoint=self.endpoint,
            status=self.status,
            created_at=self.created_at,
            deadline=self.deadline,
            started_at=self.started_at,
            finished_at=self.finished_at,
            attempts=self.attempts,
            status_code=self.outcome.status_code if self.outcome else None,
            result=self.outcome.body_value() if self.outcome else None,
        )
        if self.upstream_task_id:
            view["upstream_task_id"] = self.upstream_task_id
            view["progress"] = self.progress or None
            view["upstream_task"] = orjson.loads(self.upstream_task) if self.upstream_task else None
        if self.mode is ResponseMode.CALLBACK and self.callback_url:
            view["callback"] = CallbackView(
                url=self.callback_url,
                status=self.callback_status,
                attempts=self.callback_attempts,
                last_error=self.callback_last_error or None,
            )
        return view
