"""Upstream task APIs (Midjourney-proxy, Suno-API): the submit answers at once with the
upstream's own task id, and the task is read later, many at once, until it ends.

Each API has a submit adapter (a JSON POST whose answer codes are mapped onto HTTP statuses,
so the caller's retry rules apply: "queue full" is retried like a 429, a refusal is final;
see `workers/upstream_call.py` for the narrower retry rule of these submits)
and a `TaskApi` that names the submitted task, reads a batch of tasks in one request and says
where a task stands. Following the tasks is `workers/follower.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
import orjson

from queue_service.endpoints import (
    MIDJOURNEY,
    SUNO,
    TASK_API_ENDPOINTS,
    UNFOLLOWED_TASK_ENDPOINTS,
)

from .base import Upstream, UpstreamReply
from .http import bearer_headers, post_json
from .json_endpoints import OneShotAdapter

REFUSED = 422
"""The status a job's outcome takes when the upstream refused the submit in its answer."""
MALFORMED = 502
"""The status of a submit answer that is not the API's answer shape (no `code`, or a success
without the task id to follow or the result it promises): the job fails, it is not retried
(the upstream may hold a task already)."""
NOT_SUBMITTED = 503
"""Midjourney's code 9 ("system error, retry later"): nothing was submitted; retried."""

MIDJOURNEY_ACCEPTED = {1, 21, 22}
"""Submit codes naming a task to follow: 1 submitted, 21 the task exists already (its id is
the result), 22 waiting in the upstream's own queue."""
MIDJOURNEY_QUEUE_FULL = 23
"""The upstream's queue is full: nothing was submitted; retried like a 429."""
MIDJOURNEY_SYSTEM_ERROR = 9
"""The upstream failed before taking the task: nothing was submitted; answered 503, retried."""
MIDJOURNEY_ENDS = {"SUCCESS": True, "MODAL": True, "FAILURE": False, "CANCEL": False}
"""Midjourney statuses that end a task, and whether the job succeeds. `MODAL` waits for a
`/mj/submit/modal` (the client's next job, naming this task): this job's result is the task
object, which the client needs to send it."""
SUNO_ENDS = {"SUCCESS": True, "FAILURE": False}


@dataclass(frozen=True, slots=True)
class UpstreamTaskState:
    """Where an upstream task stands."""

    progress: str
    """As the upstream words it ("45%")."""
    ended: bool
    succeeded: bool


class TaskApi(Protocol):
    name: str

    def task_id(self, answer: Any) -> str | None:
        """The task a successful submit answer (parsed JSON) names; None when it names none."""
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


def _state(task: Any, ends: dict[str, bool]) -> UpstreamTaskState:
    if not isinstance(task, dict):
        return UpstreamTaskState("", ended=False, succeeded=False)
    status = str(task.get("status") or "")
    progress = str(task.get("progress") or "")
    return UpstreamTaskState(progress, status in ends, ends.get(status, False))


class MidjourneyApi:
    """midjourney-proxy: `{"code", "description", "result"}` submits; tasks read by
    `POST /mj/task/list-by-condition {"ids": [...]}` (a list of task objects)."""

    name = MIDJOURNEY

    def task_id(self, answer: Any) -> str | None:
        result = answer.get("result") if isinstance(answer, dict) else None
        if isinstance(result, bool) or not isinstance(result, str | int) or result == "":
            return None
        return str(result)

    async def fetch(
        self, client: httpx.AsyncClient, upstream: Upstream, task_ids: list[str]
    ) -> dict[str, Any]:
        tasks = await _read(client, upstream, "/mj/task/list-by-condition", {"ids": task_ids})
        if not isinstance(tasks, list):
            raise UnreadableAnswer("/mj/task/list-by-condition answered no list")
        return {str(task["id"]): task for task in tasks if isinstance(task, dict) and "id" in task}

    def state(self, task: Any) -> UpstreamTaskState:
        return _state(task, MIDJOURNEY_ENDS)


class SunoApi:
    """Suno-API: `{"code": "success", "data": "<task id>"}` submits; tasks read by
    `POST /suno/fetch {"ids": [...]}` (`data`: a list of task objects)."""

    name = SUNO

    def task_id(self, answer: Any) -> str | None:
        data = answer.get("data") if isinstance(answer, dict) else None
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
        return _state(task, SUNO_ENDS)


TASK_APIS: dict[str, TaskApi] = {api.name: api for api in (MidjourneyApi(), SunoApi())}


class TaskSubmitAdapter(OneShotAdapter):
    """A task API's submit: a JSON POST whose answer's own code is mapped onto the HTTP
    status, since these APIs answer 200 for refusals too. A success must carry what the job
    needs: the task id to follow (`followed`), or for the one endpoint answered at once
    (`UNFOLLOWED_TASK_ENDPOINTS`) a result."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.api = TASK_APIS[TASK_API_ENDPOINTS[endpoint]]
        self.followed = endpoint not in UNFOLLOWED_TASK_ENDPOINTS

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
            return replace(reply, status_code=MALFORMED)
        return replace(reply, status_code=self._status(answer))

    def not_submitted(self, reply: UpstreamReply) -> bool:
        """Whether the upstream surely took no task: it refused for now (HTTP 429, or
        Midjourney's 23 "queue full", mapped to 429) or failed before taking it (Midjourney's
        9, mapped to 503). Only these are worth a retry: any other failure may have left a
        task upstream, and a second submit would start (and bill) another one."""
        if reply.status_code == 429:
            return True
        return reply.status_code == NOT_SUBMITTED and _code(reply.body) == MIDJOURNEY_SYSTEM_ERROR

    def _status(self, answer: Any) -> int:
        if not isinstance(answer, dict) or "code" not in answer:
            return MALFORMED
        code = answer["code"]
        if self.api.name == SUNO:
            if code != "success":
                return REFUSED
        elif isinstance(code, bool) or code not in MIDJOURNEY_ACCEPTED:
            if code == MIDJOURNEY_QUEUE_FULL:
                return 429
            return NOT_SUBMITTED if code == MIDJOURNEY_SYSTEM_ERROR else REFUSED
        if self.followed:
            return 200 if self.api.task_id(answer) is not None else MALFORMED
        return 200 if answer.get("result") not in (None, "", []) else MALFORMED


def _code(body: bytes) -> Any:
    """The `code` of a submit answer (None when it has none)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer.get("code") if isinstance(answer, dict) else None


SUBMIT_ADAPTERS = [TaskSubmitAdapter(endpoint) for endpoint in TASK_API_ENDPOINTS]
