"""Midjourney-proxy (novicezk's midjourney-proxy and -plus, as New API relays them): a submit
answers a task id, which the client then polls until SUCCESS or FAILURE.

Every answer is JSON with Bearer auth. HTTP errors answer `{"code": <HTTP status>,
"description": why, "result": null}`; the proxy's own refusals are HTTP 200 with another
`code` than 1, which `mock.submit_code` asks for (see SUBMIT_CODES).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import MockConfig
from .images import colour_of
from .midjourney_tasks import MjTask, image_seed, new_task_id, task_object
from .recording import MockState
from .task_lifecycle import SUCCESS, Lifecycle, MidjourneyControls
from .task_requests import TaskRequests, json_response, text


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"code": status, "description": message, "result": None}, status, headers)


class Draft(NamedTuple):
    """What a valid submit makes a task of."""

    action: str
    prompt: str
    description: str


Drafter = Callable[[dict[str, Any], Mapping[str, MjTask]], Draft | str]
"""(submit fields, tasks so far) -> the task to create, or why the submit is invalid."""


def _prompted(action: str) -> Drafter:
    """A submit made of its `prompt` alone (IMAGINE, SHORTEN), described as `/<action> prompt`."""

    def draft(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
        prompt = text(fields, "prompt")
        if prompt is None:
            return "`prompt` is required."
        return Draft(action, prompt, f"/{action.lower()} {prompt}")

    return draft


def _blend(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
    images = fields.get("base64Array")
    if not isinstance(images, list) or not 2 <= len(images) <= 5:
        return "`base64Array` must hold 2 to 5 base64 images."
    if not all(isinstance(image, str) and image for image in images):
        return "`base64Array` must hold base64 image strings."
    return Draft("BLEND", "", f"/blend {len(images)} images")


def _describe(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
    if text(fields, "base64") is None:
        return "`base64` is required."
    return Draft("DESCRIBE", "", "/describe image.png")


_JOB_ACTIONS = {"upsample": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}


def action_of(custom_id: str) -> str:
    """The action a button starts, from its customId `MJ::JOB::<kind>::<n>::<hash>`."""
    parts = custom_id.split("::")
    if parts[:2] == ["MJ", "JOB"] and len(parts) > 2:
        kind = parts[2]
        return "PAN" if kind.startswith("pan_") else _JOB_ACTIONS.get(kind, "ACTION")
    return "ZOOM" if parts[:2] == ["MJ", "Outpaint"] else "ACTION"


def _parent_prompt(task_id: str, tasks: Mapping[str, MjTask]) -> str:
    parent = tasks.get(task_id)
    return "" if parent is None else parent.prompt


def _action(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
    custom_id, task_id = text(fields, "customId"), text(fields, "taskId")
    if custom_id is None or task_id is None:
        return "`customId` and `taskId` are required."
    action = action_of(custom_id)
    return Draft(action, _parent_prompt(task_id, tasks), f"/{action.lower()} {task_id}")


def _modal(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
    task_id = text(fields, "taskId")
    if task_id is None:
        return "`taskId` is required."
    prompt = text(fields, "prompt") or _parent_prompt(task_id, tasks)
    return Draft("MODAL", prompt, f"/modal {task_id}")


def _swap(fields: dict[str, Any], tasks: Mapping[str, MjTask]) -> Draft | str:
    if text(fields, "sourceBase64") is None or text(fields, "targetBase64") is None:
        return "`sourceBase64` and `targetBase64` are required."
    return Draft("SWAP_FACE", "", "/swap_face")


SUBMITS: dict[str, Drafter] = {
    "/mj/submit/imagine": _prompted("IMAGINE"),
    "/mj/submit/blend": _blend,
    "/mj/submit/describe": _describe,
    "/mj/submit/action": _action,
    "/mj/submit/modal": _modal,
    "/mj/submit/shorten": _prompted("SHORTEN"),
    "/mj/insight-face/swap": _swap,
}
"""The endpoints that create a task."""

SUBMIT_CODES = {
    1: "Submit success",
    21: "任务已存在",
    22: "排队中，前面还有1个任务",
    23: "队列已满，请稍后尝试",
    24: "可能包含敏感词",
    0: "提交失败",
    3: "关联任务不存在或已失效",
    4: "参数错误",
    9: "系统异常，请稍后重试",
}
"""The proxy's answer codes and their descriptions; any other code answers "mock refusal"."""
CREATING = frozenset({1, 21, 22})
"""Codes that come with a task id: 21 the task exists, 22 it waits in the proxy's queue."""


def _properties(code: int, prompt: str) -> dict[str, Any]:
    if code == 22:
        return {"numberOfQueues": 1, "discordInstanceId": "mock"}
    if code == 24:
        return {"promptEn": prompt, "bannedWord": prompt.split()[0] if prompt else ""}
    return {}


class MidjourneyApi:
    """The Midjourney routes over `tasks`, the tasks submitted so far by id."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.tasks: dict[str, MjTask] = {}
        self.requests = TaskRequests(config, state, _error, not_found="Task {id} not found.")

    def submit(self, draft: Drafter) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            task_id = new_task_id(self.tasks)
            submitted = await self.requests.submit(request, task_id, MidjourneyControls)
            if isinstance(submitted, Response):
                return submitted
            made = draft(submitted.fields, self.tasks)
            if isinstance(made, str):
                return _error(400, made)
            controls = submitted.controls
            if controls.submit_answer is not None:
                return json_response(controls.submit_answer)
            code = 1 if controls.submit_code is None else controls.submit_code
            answer = {
                "code": code,
                "description": SUBMIT_CODES.get(code, "mock refusal"),
                "properties": _properties(code, made.prompt),
                "result": None,
            }
            if code in CREATING:
                state = submitted.fields.get("state")
                life = Lifecycle.begin(controls, self.config)
                self.tasks[task_id] = MjTask(
                    task_id, made.action, made.prompt, made.description, str(state or ""), life
                )
                answer["result"] = task_id
            if controls.submit_delay:
                await asyncio.sleep(controls.submit_delay)
            return json_response(answer)

        return handle

    async def upload(self, request: Request) -> Response:
        """An image URL on the mock per image, at once (no task)."""
        upload_id = "upl-" + secrets.token_hex(8)
        submitted = await self.requests.submit(request, upload_id, MidjourneyControls)
        if isinstance(submitted, Response):
            return submitted
        if submitted.controls.submit_answer is not None:
            return json_response(submitted.controls.submit_answer)
        images = submitted.fields.get("base64Array")
        if not isinstance(images, list) or not all(isinstance(one, str) for one in images):
            return _error(400, "`base64Array` must be a list of base64 images.")
        base = submitted.base_url
        urls = [f"{base}_mock/images/{colour_of(upload_id, i)}.png" for i in range(len(images))]
        return json_response({"code": 1, "description": "success", "result": urls})

    async def list_by_condition(self, request: Request) -> Response:
        """The known tasks among `ids`, in the order asked: a bare JSON list."""
        fetched = await self.requests.fetch_many(request, self.tasks)
        if isinstance(fetched, Response):
            return fetched
        return json_response([task_object(task, fetched.base_url) for task in fetched.result])

    async def fetch(self, request: Request) -> Response:
        fetched = await self.requests.fetch(request, self.tasks)
        if isinstance(fetched, Response):
            return fetched
        return json_response(task_object(fetched.result, fetched.base_url))

    async def seed(self, request: Request) -> Response:
        """The seed of a task's image, once it has one (code 4 before)."""
        fetched = await self.requests.fetch(request, self.tasks)
        if isinstance(fetched, Response):
            return fetched
        task = fetched.result
        status = task.life.phase().status
        if status != SUCCESS:
            answer = {"code": 4, "description": f"任务未完成 (status {status})", "result": None}
            return json_response(answer)
        return json_response({"code": 1, "description": "success", "result": image_seed(task.id)})

    def routes(self) -> list[Route]:
        return [
            *(Route(path, self.submit(draft), methods=["POST"]) for path, draft in SUBMITS.items()),
            Route("/mj/submit/upload-discord-images", self.upload, methods=["POST"]),
            Route("/mj/task/list-by-condition", self.list_by_condition, methods=["POST"]),
            Route("/mj/task/{id}/fetch", self.fetch, methods=["GET"]),
            Route("/mj/task/{id}/image-seed", self.seed, methods=["GET"]),
        ]
