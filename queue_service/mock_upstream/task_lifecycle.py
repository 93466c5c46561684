"""The life of a Midjourney or Suno task and the `mock` controls of the submit that shape it.

A task's state is computed from its submit time whenever it is asked for, never advanced by
background work: the mock stays a plain request/response app, and a test or a benchmark can
leave thousands of tasks running for free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Self

from pydantic import Field, model_validator

from .config import MockConfig
from .controls import FailureControls

NOT_START, SUBMITTED, IN_PROGRESS = "NOT_START", "SUBMITTED", "IN_PROGRESS"
SUCCESS, FAILURE = "SUCCESS", "FAILURE"
"""Task statuses, the same words in both APIs."""


class TaskControls(FailureControls):
    """The `mock` object of a task submit; all optional, unknown keys rejected. A `status`
    error creates no task."""

    duration: float | None = Field(default=None, ge=0)
    """Seconds from leaving the queue to the end (default: MockConfig.task_duration)."""
    steps: int | None = Field(default=None, ge=1)
    """Progress steps (default: MockConfig.task_steps)."""
    queued: float = Field(default=0.0, ge=0)
    """Seconds spent NOT_START before the task runs."""
    fail: str | None = Field(default=None, min_length=1)
    """End FAILURE with this reason instead of SUCCESS."""
    submit_delay: float | None = Field(default=None, ge=0)
    """Seconds the submit takes to answer (its task is created at once all the same)."""
    submit_answer: dict[str, Any] | list[Any] | str | int | None = None
    """Answer the submit with exactly this JSON (HTTP 200), creating no task: an answer that
    is not the API's shape."""
    forget_after: float | None = Field(default=None, ge=0)
    """Seconds after the submit when the upstream forgets the task: batch reads leave it
    out, a read of it alone answers 404."""
    read_status: int | None = Field(default=None, ge=400, le=599)
    """A read naming the task answers this HTTP status (the whole batch), in the API's error
    format."""
    read_fail_times: int | None = Field(default=None, ge=0)
    """Only the first N reads naming the task fail with `read_status`."""
    read_delay: float | None = Field(default=None, ge=0)
    """Seconds a read naming the task waits before it answers."""

    @model_validator(mode="after")
    def _read_failure_consistent(self) -> Self:
        if self.read_fail_times is not None and self.read_status is None:
            raise ValueError("read_fail_times only makes sense with read_status")
        return self


class MidjourneyControls(TaskControls):
    submit_code: int | None = None
    """Answer this `code` instead of 1: 21 and 22 still create the task, any other creates
    none and answers `result: null`."""
    end_status: Literal["MODAL", "CANCEL"] | None = None
    """End in this status instead of SUCCESS: `MODAL` (waiting for a `/mj/submit/modal`, as
    the proxy's tasks of some buttons do) or `CANCEL` (cancelled upstream)."""


class SunoControls(TaskControls):
    submit_code: str | None = None
    """Answer this `code` instead of "success": anything else creates no task."""


class Phase(NamedTuple):
    """Where a task is at one moment."""

    status: str
    progress: str
    """"0%" to "100%"."""
    step: int
    """0 until the first step is done, `steps` at the end."""
    started: float | None
    """time.time() it left the queue; None while NOT_START."""
    finished: float | None
    """time.time() it ended; None until then."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A task's timing, fixed at submit: NOT_START for `queued` seconds, then SUBMITTED,
    IN_PROGRESS through `steps` steps over `duration` seconds, then SUCCESS or FAILURE."""

    submitted: float
    """time.time() of the submit (the timestamps answered)."""
    clock: float
    """time.monotonic() of the submit (what the phase is computed from)."""
    queued: float
    duration: float
    steps: int
    fail: str | None
    end: str | None = None
    """The status it ends with when not FAILURE, instead of SUCCESS (MODAL, CANCEL)."""

    @classmethod
    def begin(cls, controls: TaskControls, config: MockConfig) -> Lifecycle:
        """The life of a task submitted now."""
        return cls(
            submitted=time.time(),
            clock=time.monotonic(),
            queued=controls.queued,
            duration=config.task_duration if controls.duration is None else controls.duration,
            steps=config.task_steps if controls.steps is None else controls.steps,
            fail=controls.fail,
            end=controls.end_status if isinstance(controls, MidjourneyControls) else None,
        )

    def phase(self, now: float | None = None) -> Phase:
        """The phase at time.monotonic() `now` (default: this moment)."""
        elapsed = (time.monotonic() if now is None else now) - self.clock
        if elapsed < self.queued:
            return Phase(NOT_START, "0%", 0, None, None)
        started = self.submitted + self.queued
        running = elapsed - self.queued
        if running >= self.duration:
            end = FAILURE if self.fail is not None else (self.end or SUCCESS)
            return Phase(end, "100%", self.steps, started, started + self.duration)
        # Below `steps` even when float rounding would reach it just before the end.
        step = min(int(running / (self.duration / self.steps)), self.steps - 1)
        if step == 0:
            return Phase(SUBMITTED, "0%", 0, started, None)
        return Phase(IN_PROGRESS, f"{step * 100 // self.steps}%", step, started, None)
