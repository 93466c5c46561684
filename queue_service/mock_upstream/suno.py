"""Suno-API (as New API relays it): a submit answers a task id, which the client then fetches
until SUCCESS or FAILURE.

Every answer is JSON with Bearer auth, `{"code", "message", "data"}`: "success" and the
result, or on an HTTP error `{"code": "error", "message": why, "data": null}`. Suno's own
refusals are HTTP 200 with another code, which `mock.submit_code` asks for.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import MockConfig
from .recording import MockState
from .suno_tasks import AUDIO_FILES, DEFAULT_MODEL, Clip, SunoTask, lyrics, task_object
from .task_lifecycle import Lifecycle, SunoControls
from .task_requests import TaskRequests, json_response, text


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"code": "error", "message": message, "data": None}, status, headers)


def _success(data: Any) -> Response:
    return json_response({"code": "success", "message": "", "data": data})


class Draft(NamedTuple):
    """What a valid submit makes a task of."""

    action: str
    prompt: str
    clips: tuple[Clip, ...]


def _clip(title: str, *, tags: str = "", prompt: str = "", gpt: str | None = None) -> Clip:
    return Clip(str(uuid.uuid4()), title, tags, prompt, gpt, DEFAULT_MODEL)


def _music(fields: dict[str, Any]) -> Draft | str:
    """Custom mode (`prompt`: the lyrics) or inspiration mode (`gpt_description_prompt`)."""
    prompt, described = text(fields, "prompt"), text(fields, "gpt_description_prompt")
    if prompt is None and described is None:
        return "`prompt` or `gpt_description_prompt` is required."
    title = text(fields, "title") or "Mock Song"
    model = text(fields, "mv") or DEFAULT_MODEL
    clips = tuple(
        Clip(
            str(uuid.uuid4()),
            title,
            text(fields, "tags") or "",
            prompt if prompt is not None else lyrics(str(described)),
            described,
            model,
        )
        for _ in range(2)
    )
    return Draft("MUSIC", prompt or "", clips)


def _lyrics(fields: dict[str, Any]) -> Draft | str:
    prompt = text(fields, "prompt")
    if prompt is None:
        return "`prompt` is required."
    return Draft("LYRICS", prompt, ())


def _concat(fields: dict[str, Any]) -> Draft | str:
    if text(fields, "clip_id") is None:
        return "`clip_id` is required."
    return Draft("CONCAT", "", (_clip("Mock Song (full)"),))


def _upload(fields: dict[str, Any]) -> Draft | str:
    url = text(fields, "url")
    if url is None:
        return "`url` is required."
    name = url.rstrip("/").rsplit("/", 1)[-1] or "upload"
    return Draft("UPLOAD", "", (_clip(name),))


SUBMITS: dict[str, Callable[[dict[str, Any]], Draft | str]] = {
    "/suno/submit/music": _music,
    "/suno/submit/lyrics": _lyrics,
    "/suno/submit/concat": _concat,
    "/suno/uploads/audio-url": _upload,
}
"""The endpoints that create a task: (submit fields) -> the task, or why it is invalid."""


class SunoApi:
    """The Suno routes over `tasks`, the tasks submitted so far by id."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.tasks: dict[str, SunoTask] = {}
        self.requests = TaskRequests(config, state, _error, not_found="task not found")

    def submit(
        self, draft: Callable[[dict[str, Any]], Draft | str]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            task_id = str(uuid.uuid4())
            submitted = await self.requests.submit(request, task_id, SunoControls)
            if isinstance(submitted, Response):
                return submitted
            made = draft(submitted.fields)
            if isinstance(made, str):
                return _error(400, made)
            controls = submitted.controls
            if controls.submit_answer is not None:
                return json_response(controls.submit_answer)
            if controls.submit_code not in (None, "success"):
                refusal = {"code": controls.submit_code, "message": "mock refusal", "data": None}
                return json_response(refusal)
            hook = submitted.fields.get("notify_hook")
            life = Lifecycle.begin(controls, self.config)
            self.tasks[task_id] = SunoTask(
                task_id, made.action, str(hook or ""), made.prompt, made.clips, life
            )
            if controls.submit_delay:
                await asyncio.sleep(controls.submit_delay)
            return _success(task_id)

        return handle

    async def fetch_many(self, request: Request) -> Response:
        """The known tasks among `ids`, in the order asked (`action` is accepted, unused)."""
        fetched = await self.requests.fetch_many(request, self.tasks)
        if isinstance(fetched, Response):
            return fetched
        return _success([task_object(task, fetched.base_url) for task in fetched.result])

    async def fetch(self, request: Request) -> Response:
        fetched = await self.requests.fetch(request, self.tasks)
        if isinstance(fetched, Response):
            return fetched
        return _success(task_object(fetched.result, fetched.base_url))

    def routes(self) -> list[Route]:
        return [
            *(Route(path, self.submit(draft), methods=["POST"]) for path, draft in SUBMITS.items()),
            Route("/suno/fetch", self.fetch_many, methods=["POST"]),
            Route("/suno/fetch/{id}", self.fetch, methods=["GET"]),
            AUDIO_FILES,
        ]
