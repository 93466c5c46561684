"""Holding a job until its route's and its tenant's budgets have room for it, settling its
token estimate with the answer's usage, and pausing a route for every worker when its
upstream asks for a pause (see store/budgets.py).

A job's tokens are estimated before it is sent: about a token per four bytes of its prompt,
plus the completion it allows (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) or
the route's `default_max_tokens`. The answer's `usage` then settles the difference.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from queue_service.store import Budget, Outcome, TaskRecord
from queue_service.store.budgets import Budgets
from queue_service.store.keys import tenant_id

from .routing import UpstreamRoute
from .usage import usage_of

TENANT_BUDGETS_TTL = 10.0
"""Seconds a worker keeps the tenants' budgets before reading them again."""
DEFAULT_COOLDOWN = 1.0
"""Seconds a route pauses after a 429 that names no `Retry-After`."""
LONGEST_NAP = 1.0
"""A waiting job asks again at least this often (a cooldown may have been set meanwhile)."""
PROMPT_FIELDS = ("messages", "prompt", "input", "system", "instructions", "documents", "query")
COMPLETION_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
GENERATIVE = {"/v1/chat/completions", "/v1/messages", "/v1/completions"}


@dataclass(slots=True)
class Admission:
    """What a job took: the budgets it falls under, and its token estimate."""

    budgets: list[Budget]
    estimate: int
    sent: bool = False
    """A request went out on it (else `refund` gives it all back)."""


def estimate_tokens(endpoint: str, data: dict[str, Any], default_max_tokens: int) -> int:
    """A job's tokens before it runs: its prompt's, and the completion it may use."""
    prompt = sum(len(orjson.dumps(data[name])) for name in PROMPT_FIELDS if name in data) // 4
    if endpoint not in GENERATIVE:
        return prompt
    limit = next((data[name] for name in COMPLETION_LIMITS if name in data), None)
    completion = limit if isinstance(limit, int) and limit > 0 else default_max_tokens
    return prompt + completion


class BudgetGate:
    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._cooling: dict[str, float] = {}
        """Route -> until when it cools down (epoch s), as announced (see `route_cooling`)."""
        self._tenants: dict[str, Budget] = {}
        self._tenants_read_at = -TENANT_BUDGETS_TTL

    async def admit(
        self, record: TaskRecord, route: UpstreamRoute, data: dict[str, Any]
    ) -> Admission:
        """Wait until the job's budgets have room for it (and its route is not cooling
        down), and take its share; the caller's deadline bounds the wait."""
        while True:
            admitted = await self.admit_within(record, route, data, LONGEST_NAP)
            if isinstance(admitted, Admission):
                return admitted
            await asyncio.sleep(min(admitted, LONGEST_NAP))

    async def admit_within(
        self, record: TaskRecord, route: UpstreamRoute, data: dict[str, Any], most_s: float
    ) -> Admission | float:
        """Take the job's share if there is room within `most_s` seconds (waiting for it);
        else the seconds it would have to wait, taking nothing. A job under no budget only
        waits out its route's cooldown, known from the announcements without a round trip."""
        budgets = [budget for budget in (route.budget, await self._tenant(record)) if budget]
        if not budgets:  # only a cooldown can hold it: known here from the announcements
            while (wait := self._cooling.get(route.name, 0.0) - time.time()) > 0:
                if wait > most_s:
                    return wait
                await asyncio.sleep(wait)
            return Admission([], 0)
        estimate = 0
        if any(budget.tpm for budget in budgets):
            estimate = estimate_tokens(record.endpoint, data, route.default_max_tokens)
        online = record.level == 0
        while True:
            wait_ms = await self.budgets.take(route.name, budgets, estimate, online)
            if not wait_ms:
                return Admission(budgets, estimate)
            if wait_ms / 1000 > most_s:
                return wait_ms / 1000
            await asyncio.sleep(wait_ms / 1000)

    async def budgeted(self, route: UpstreamRoute | None = None) -> bool:
        """Whether jobs (on `route`) fall under budgets: the route's, or some tenant's."""
        if route is not None and route.budget is not None:
            return True
        return bool(await self._tenants_with_budgets())

    async def settle(self, admission: Admission, outcome: Outcome) -> None:
        """Settle the estimate with the answer's usage (a failed answer without usage used
        nothing; a successful one without usage keeps its estimate)."""
        if not admission.estimate:
            return
        usage = usage_of(outcome.body, outcome.content_type)
        if usage is not None:
            used = usage.prompt + usage.completion
        elif outcome.status_code >= 400:
            used = 0
        else:
            return
        await self.budgets.settle(admission.budgets, admission.estimate, used)

    async def refund(self, admission: Admission) -> None:
        """Give back all a job took when no request went out on it (it ended, or was
        stopped, before its call)."""
        if admission.budgets and not admission.sent:
            await self.budgets.refund(admission.budgets, admission.estimate)

    async def pushed_back(
        self, route: UpstreamRoute, status_code: int, retry_after: float | None
    ) -> bool:
        """An upstream's 429 (or 503 naming a `Retry-After`) pauses its route for every
        worker; True when it did."""
        if status_code == 429 or (status_code == 503 and retry_after is not None):
            until = await self.budgets.cool_down(route.name, retry_after or DEFAULT_COOLDOWN)
            self.route_cooling(f"{route.name}|{until}")
            return True
        return False

    def route_cooling(self, announced: str) -> None:
        """A route's cooldown, as announced (`<route>|<until ms>`): jobs on routes without
        budgets learn of it here instead of asking Redis before every request."""
        route, _, until = announced.rpartition("|")
        until_s = int(until) / 1000
        if until_s > self._cooling.get(route, 0.0):
            self._cooling[route] = until_s

    async def _tenant(self, record: TaskRecord) -> Budget | None:
        return (await self._tenants_with_budgets()).get(tenant_id(record.tenant))

    async def _tenants_with_budgets(self) -> dict[str, Budget]:
        if time.monotonic() - self._tenants_read_at > TENANT_BUDGETS_TTL:
            self._tenants = await self.budgets.tenant_budgets()
            self._tenants_read_at = time.monotonic()
        return self._tenants
