"""The life of a Midjourney or Suno task and the `mock` controls of the submit that shape it.

A task's state is computed from its submit time whenever it is asked for, never advanced by
background work: the mock stays a plain request/response app, and a test or a benchmark can
leave thousands of tasks running for free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import Field

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


class MidjourneyControls(TaskControls):
    submit_code: int | None = None
    """Answer this `code` instead of 1: 21 and 22 still create the task, any other creates
    none and answers `result: null`."""


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
        )

    def phase(self, now: float | None = None) -> Phase:
        """The phase at time.monotonic() `now` (default: this moment)."""
        elapsed = (time.monotonic() if now is None else now) - self.clock
        if elapsed < self.queued:
            return Phase(NOT_START, "0%", 0, None, None)
        started = self.submitted + self.queued
        running = elapsed - self.queued
        if running >= self.duration:
            end = FAILURE if self.fail is not None else SUCCESS
            return Phase(end, "100%", self.steps, started, started + self.duration)
        # Below `steps` even when float rounding would reach it just before the end.
        step = min(int(running / (self.duration / self.steps)), self.steps - 1)
        if step == 0:
            return Phase(SUBMITTED, "0%", 0, started, None)
        return Phase(IN_PROGRESS, f"{step * 100 // self.steps}%", step, started, None)
