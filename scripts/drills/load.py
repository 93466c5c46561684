"""Load for the drills: jobs with the outcome each should have, put at a steady rate, and the
ledger of which puts were accepted (a task id) and which were refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Expect:
    """The callback a job must end with."""

    status: str
    status_code: int

    def __str__(self) -> str:
        return f"{self.status} {self.status_code}"


SUCCEEDED = Expect("succeeded", 200)


@dataclass(slots=True)
class Job:
    text: str
    """The prompt: unique, and echoed back by the mock in a successful reply."""
    payload: dict[str, Any]
    expect: Expect
    sent_at: float = 0.0
    """time.monotonic() when the put was sent."""
    answered_at: float = 0.0
    """time.monotonic() when its answer (or the error instead) came."""
    http_status: int | None = None
    """The put's HTTP status; None when no answer came (connection error, timeout)."""
    task_id: str | None = None
    refusal: str | None = None


@dataclass
class Ledger:
    accepted: dict[str, Job] = field(default_factory=dict)
    refused: list[Job] = field(default_factory=list)

    def refusals(self) -> dict[str, int]:
        """How many puts were refused, by reason."""
        counts: dict[str, int] = {}
        for job in self.refused:
            reason = job.refusal or "?"
            counts[reason] = counts.get(reason, 0) + 1
        return counts


class Submitter:
    """Builds a drill's jobs and puts them on its queue through the API."""

    def __init__(self, api_url: str, queue: str, callback_url: str, ledger: Ledger) -> None:
        self.api_url = api_url
        self.queue = queue
        self.callback_url = callback_url
        self.ledger = ledger
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(15.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._serial = 0

    async def close(self) -> None:
        await self.client.aclose()

    def job(
        self, mock: dict[str, Any], expect: Expect = SUCCEEDED, timeout: int | None = None
    ) -> Job:
        """A chat completion job; every fourth one online (level 0), the rest offline."""
        self._serial += 1
        text = f"{self.queue}-{self._serial:05d}-{uuid.uuid4().hex[:8]}"
        payload: dict[str, Any] = {
            "queue": self.queue,
            "endpoint": "/v1/chat/completions",
            "level": 0 if self._serial % 4 == 0 else 1,
            "data": {
                "model": "m",
                "messages": [{"role": "user", "content": text}],
                "mock": mock,
            },
            "callback_url": self.callback_url,
        }
        if timeout is not None:
            payload["timeout"] = timeout
        return Job(text, payload, expect)

    def midjourney_job(self, mock: dict[str, Any]) -> Job:
        """A Midjourney imagine job (callback mode, offline), its prompt unique."""
        self._serial += 1
        text = f"{self.queue}-{self._serial:05d}-{uuid.uuid4().hex[:8]}"
        payload: dict[str, Any] = {
            "queue": self.queue,
            "endpoint": "/mj/submit/imagine",
            "level": 1,
            "data": {"prompt": text, "mock": mock},
            "callback_url": self.callback_url,
        }
        return Job(text, payload, SUCCEEDED)

    async def put(self, job: Job) -> None:
        job.sent_at = time.monotonic()
        try:
            response = await self.client.post(f"{self.api_url}/v1/queue/put", json=job.payload)
        except httpx.HTTPError as exc:
            job.answered_at = time.monotonic()
            job.refusal = type(exc).__name__
            self.ledger.refused.append(job)
            return
        job.answered_at = time.monotonic()
        job.http_status = response.status_code
        if response.status_code == 200:
            job.task_id = str(response.json()["data"])
            self.ledger.accepted[job.task_id] = job
        else:
            job.refusal = f"HTTP {response.status_code}"
            if response.status_code != 503:  # a drill's own mistake: say what it was
                job.refusal += f" ({response.text[:120]})"
            self.ledger.refused.append(job)

    async def steady(self, jobs: list[Job], rate: float) -> None:
        """Put `jobs` at `rate` per second (each put on its own, so a slow one delays none)."""
        start = time.monotonic()
        puts: list[asyncio.Task[None]] = []
        try:
            for index, job in enumerate(jobs):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                puts.append(asyncio.create_task(self.put(job)))
            await asyncio.gather(*puts)
        finally:
            for put in puts:
                put.cancel()

    async def view(self, task_id: str) -> dict[str, Any] | None:
        """`GET /v1/queue/{task_id}`'s data, or None when it cannot be had."""
        return (await self.lookup(task_id))[1]

    async def lookup(self, task_id: str) -> tuple[int | None, dict[str, Any] | None]:
        """`GET /v1/queue/{task_id}`: the HTTP status (None: no answer) and, on 200, the data."""
        try:
            response = await self.client.get(f"{self.api_url}/v1/queue/{task_id}")
        except httpx.HTTPError:
            return None, None
        if response.status_code != 200:
            return response.status_code, None
        data: dict[str, Any] = response.json()["data"]
        return 200, data

    async def views(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The views of many tasks, a few at a time."""
        gate = asyncio.Semaphore(16)

        async def one(task_id: str) -> tuple[str, dict[str, Any] | None]:
            async with gate:
                return task_id, await self.view(task_id)

        pairs = await asyncio.gather(*(one(task_id) for task_id in task_ids))
        return {task_id: view for task_id, view in pairs if view is not None}
