"""Upstream task APIs (Midjourney-proxy, Suno-API): the submit answers at once with the
upstream's own task id, and the task is read later, many at once, until it ends.

Each API has a submit adapter (a JSON POST whose answer codes are mapped onto HTTP statuses,
so the caller's retry rules apply: "queue full" is retried like a 429, a refusal is final)
and a `TaskApi` that names the submitted task, reads a batch of tasks in one request and says
where a task stands. Following the tasks is `workers/follower.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
import orjson

from queue_service.endpoints import MIDJOURNEY, SUNO, TASK_API_ENDPOINTS

from .base import Upstream, UpstreamReply
from .http import bearer_headers, post_json
from .json_endpoints import OneShotAdapter

REFUSED = 422
"""The status a job's outcome takes when the upstream refused the submit in its answer."""

MIDJOURNEY_ACCEPTED = {1, 21, 22}
"""Submit codes naming a task to follow: 1 submitted, 21 the task exists already (its id is
the result), 22 waiting in the upstream's own queue."""
MIDJOURNEY_QUEUE_FULL = 23
"""The upstream's queue is full: nothing was submitted; retried like a 429."""


@dataclass(frozen=True, slots=True)
class UpstreamTaskState:
    """Where an upstream task stands."""

    status: str
    """As the upstream words it (`IN_PROGRESS`, `SUCCESS`...)."""
    progress: str
    """As the upstream words it ("45%")."""
    ended: bool
    succeeded: bool
    reason: str = ""
    """Why it failed, when it did."""


class TaskApi(Protocol):
    name: str

    def task_id(self, answer: bytes) -> str | None:
        """The task a successful submit answer names; None when the answer is the result
        itself (nothing to follow)."""
        ...

    async def fetch(
        self, client: httpx.AsyncClient, upstream: Upstream, task_ids: list[str]
    ) -> dict[str, Any]:
        """Task id -> task object for the ids the upstream knows, in one request (an
        `httpx.HTTPError` or `UnreadableAnswer` when it cannot be read)."""
        ...

    def state(self, task: Any) -> UpstreamTaskState: ...


class UnreadableAnswer(Exception):
    """A task read answered something that is not the API's answer shape."""


async def _read(
    client: httpx.AsyncClient, upstream: Upstream, path: str, body: dict[str, Any]
) -> Any:
    reply = await post_json(client, upstream.url(path), body, bearer_headers(upstream))
    if reply.status_code != 200:
        raise UnreadableAnswer(f"{path} answered {reply.status_code}: {reply.body[:200]!r}")
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError as exc:
        raise UnreadableAnswer(f"{path} answered no JSON: {exc}") from None


def _state(task: Any, reason_field: str) -> UpstreamTaskState:
    if not isinstance(task, dict):
        return UpstreamTaskState("UNKNOWN", "", ended=False, succeeded=False)
    status = str(task.get("status") or "UNKNOWN")
    progress = str(task.get("progress") or "")
    ended = status in ("SUCCESS", "FAILURE")
    reason = str(task.get(reason_field) or "")
    return UpstreamTaskState(status, progress, ended, status == "SUCCESS", reason)


class MidjourneyApi:
    """midjourney-proxy: `{"code", "description", "result"}` submits; tasks read by
    `POST /mj/task/list-by-condition {"ids": [...]}` (a list of task objects)."""

    name = MIDJOURNEY

    def task_id(self, answer: bytes) -> str | None:
        result = orjson.loads(answer).get("result")
        return str(result) if isinstance(result, str | int) and result != "" else None

    async def fetch(
        self, client: httpx.AsyncClient, upstream: Upstream, task_ids: list[str]
    ) -> dict[str, Any]:
        tasks = await _read(client, upstream, "/mj/task/list-by-condition", {"ids": task_ids})
        if not isinstance(tasks, list):
            raise UnreadableAnswer("/mj/task/list-by-condition answered no list")
        return {str(task["id"]): task for task in tasks if isinstance(task, dict) and "id" in task}

    def state(self, task: Any) -> UpstreamTaskState:
        return _state(task, "failReason")


class SunoApi:
    """Suno-API: `{"code": "success", "data": "<task id>"}` submits; tasks read by
    `POST /suno/fetch {"ids": [...]}` (`data`: a list of task objects)."""

    name = SUNO

    def task_id(self, answer: bytes) -> str | None:
        data = orjson.loads(answer).get("data")
        return data if isinstance(data, str) and data else None

    async def fetch(
        self, client: httpx.AsyncClient, upstream: Upstream, task_ids: list[str]
    ) -> dict[str, Any]:
        answer = await _read(client, upstream, "/suno/fetch", {"ids": task_ids})
        tasks = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(tasks, list):
            raise UnreadableAnswer(f"/suno/fetch answered no task list: {answer!r:.200}")
        return {
            str(task["task_id"]): task
            for task in tasks
            if isinstance(task, dict) and "task_id" in task
        }

    def state(self, task: Any) -> UpstreamTaskState:
        return _state(task, "fail_reason")


TASK_APIS: dict[str, TaskApi] = {api.name: api for api in (MidjourneyApi(), SunoApi())}


class TaskSubmitAdapter(OneShotAdapter):
    """A task API's submit: a JSON POST whose answer's own code is mapped onto the HTTP
    status, since these APIs answer 200 for refusals too."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.api = TASK_API_ENDPOINTS[endpoint]

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        reply = await super().call(client, upstream, data, max_bytes)
        if reply.status_code != 200:
            return reply
        try:
            answer = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return replace(reply, status_code=502)
        code = answer.get("code") if isinstance(answer, dict) else None
        return replace(reply, status_code=self._status(code))

    def _status(self, code: Any) -> int:
        if self.api == SUNO:
            return 200 if code == "success" else REFUSED
        if code in MIDJOURNEY_ACCEPTED:
            return 200
        return 429 if code == MIDJOURNEY_QUEUE_FULL else REFUSED


SUBMIT_ADAPTERS = [TaskSubmitAdapter(endpoint) for endpoint in TASK_API_ENDPOINTS]
