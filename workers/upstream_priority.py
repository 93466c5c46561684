"""A job's level carried to its upstream, opted into per route in the routing file.

Our queue serves online work first, but an engine with its own queue (vLLM, SGLang) would
otherwise run our offline requests beside the online ones in arrival order: `priority_field`
writes the level into the request under the engine's own priority field. And a provider that
sells a cheaper, slower tier (OpenAI's `flex`) suits offline work: `offline_service_tier` sends
level-1 jobs on it, falling back to the default tier when the tier is refused or the job's
deadline nears, so the saving never costs the job its result.

JSON bodies only: a multipart form (file endpoints) or a task API's submit has no such fields.
A value the job's own data sets is never overwritten.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from queue_service.endpoints import FILE_ENDPOINTS, TASK_API_ENDPOINTS
from queue_service.models import Status
from queue_service.store import Outcome, TaskRecord
from queue_service.upstreams import UpstreamEntry

log = logging.getLogger("workers.upstream_priority")

OFFLINE = 1
TIER_FIELD = "service_tier"
_REFUSAL_MARKERS = (
    "service_tier",
    "service tier",
    "resource unavailable",
    "resource_unavailable",
    "capacity",
)
"""Words of an error answer that blame the tier rather than the request (the tier's own name
counts too): OpenAI answers 429 "Resource Unavailable" when flex capacity is short, a model or
account without the tier answers 400 naming `service_tier` (Azure), Groq answers 498
`capacity_exceeded`."""
_READ_LIMIT = 4096
"""Bytes of an error answer searched for those words: room for any error's message, without
searching a huge body whole."""


@dataclass(frozen=True, slots=True)
class LevelHints:
    """A route's opt-ins (the routing-file keys of the same names); by default none."""

    priority_field: str | None = None
    priority_online: int = 0
    priority_offline: int = 1
    offline_service_tier: str | None = None
    tier_fallback_before_deadline: float = 60.0

    @classmethod
    def of(cls, entry: UpstreamEntry) -> LevelHints:
        return cls(
            entry.priority_field,
            entry.priority_online,
            entry.priority_offline,
            entry.offline_service_tier,
            entry.tier_fallback_before_deadline,
        )


NO_HINTS = LevelHints()


def _json_body(endpoint: str) -> bool:
    return endpoint not in FILE_ENDPOINTS and endpoint not in TASK_API_ENDPOINTS


def with_priority(hints: LevelHints, record: TaskRecord, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the job's level under the route's priority field (a copy), unless the route
    names none, the body is not JSON or the job set that field itself."""
    field = hints.priority_field
    if field is None or field in data or not _json_body(record.endpoint):
        return data
    value = hints.priority_offline if record.level == OFFLINE else hints.priority_online
    return {**data, field: value}


class TierChoice:
    """The service tier of one job's attempts: the route's offline tier for a level-1 job
    (whose data names no tier itself) until the upstream refuses it or the job's deadline is
    `tier_fallback_before_deadline` seconds away; then the default tier (no `service_tier`
    sent) for the rest of the job."""

    def __init__(self, hints: LevelHints, record: TaskRecord, data: dict[str, Any]) -> None:
        self.record = record
        self.fallback_before = hints.tier_fallback_before_deadline
        tier = hints.offline_service_tier
        if record.level != OFFLINE or TIER_FIELD in data or not _json_body(record.endpoint):
            tier = None
        self.tier = tier

    def request(self, data: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
        """The next attempt's body, and how long it may take on the tier before the job must
        have the default tier's time left (None: no tier, so no such limit)."""
        if self.tier is None:
            return data, None
        # Level 1 is callback-only: the record's deadline is the worker's own.
        left = self.record.deadline / 1000 - time.time() - self.fallback_before
        if left <= 0:
            self.fall_back("the job's deadline is near")
            return data, None
        return {**data, TIER_FIELD: self.tier}, left

    def refused(self, outcome: Outcome) -> bool:
        """Whether a failed attempt on the tier was the tier's refusal: its error names the
        tier, `service_tier`, or a shortage of resources or capacity. A plain rate limit does
        not count: it is retried as ever, on the tier. Falls back when it was."""
        if self.tier is None or outcome.status is Status.SUCCEEDED:
            return False
        text = outcome.body[:_READ_LIMIT].decode(errors="replace").lower()
        markers = (*_REFUSAL_MARKERS, self.tier.lower())
        if not any(marker in text for marker in markers):
            return False
        self.fall_back(f"the upstream refused it (status {outcome.status_code})")
        return True

    def fall_back(self, why: str) -> None:
        log.info(
            "task %s: service tier %s given up (%s); the default tier from now on",
            self.record.task_id,
            self.tier,
            why,
        )
        self.tier = None
