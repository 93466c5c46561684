"""The mock upstream's task APIs (Midjourney-proxy, Suno), driven over a real socket:
the running mock and what its tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from queue_service.mock_upstream import MockConfig, create_mock_app
from tests.helpers import eventually
from tests.servers import serve

IMAGINE = "/mj/submit/imagine"
LIST = "/mj/task/list-by-condition"
UPLOAD = "/mj/submit/upload-discord-images"
MUSIC = "/suno/submit/music"
LYRICS = "/suno/submit/lyrics"
SUNO_FETCH = "/suno/fetch"
ORDER = ["NOT_START", "SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILURE"]
MJ_FIELDS = {
    "action", "buttons", "description", "failReason", "finishTime", "id", "imageUrl", "progress",
    "prompt", "promptEn", "properties", "startTime", "state", "status", "submitTime",
}  # fmt: skip
SUNO_FIELDS = {
    "task_id", "notify_hook", "action", "status", "fail_reason", "submit_time", "start_time",
    "finish_time", "progress", "data",
}  # fmt: skip
CLIP_FIELDS = {
    "id", "title", "status", "metadata", "audio_url", "image_url", "video_url", "model_name",
    "image_large_url", "major_model_version",
}  # fmt: skip
METADATA_FIELDS = {
    "tags", "prompt", "duration", "error_type", "error_message", "audio_prompt_id",
    "gpt_description_prompt",
}  # fmt: skip


@dataclass
class Mock:
    app: Starlette
    client: httpx.AsyncClient

    def paths(self) -> list[str]:
        return [request.path for request in self.app.state.mock_requests]

    @property
    def mj_tasks(self) -> dict[str, Any]:
        tasks: dict[str, Any] = self.app.state.mock_mj_tasks
        return tasks

    @property
    def suno_tasks(self) -> dict[str, Any]:
        tasks: dict[str, Any] = self.app.state.mock_suno_tasks
        return tasks

    async def submit(self, path: str, body: dict[str, Any], **mock: Any) -> dict[str, Any]:
        """POST a submit with `mock` controls; asserts HTTP 200 and returns the answer."""
        response = await self.client.post(path, json={**body, "mock": mock})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def bad_request(self, path: str, body: Any) -> str:
        """POST `body`, which the API must answer with a 400 in its own error format and no task
        created; the error's message."""
        response = await self.client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert self.mj_tasks == self.suno_tasks == {}
        error = response.json()
        if path.startswith("/mj/"):
            assert (error["code"], error["result"]) == (400, None)
            return str(error["description"])
        assert (error["code"], error["data"]) == ("error", None)
        return str(error["message"])

    async def follow(
        self, url: str, key: str = "", ended: tuple[str, ...] = ("SUCCESS", "FAILURE")
    ) -> list[dict[str, Any]]:
        """GET `url` until the task in it (under `key` when given) has a status of `ended`;
        every answer seen."""
        seen: list[dict[str, Any]] = []

        async def ended_now() -> bool:
            response = await self.client.get(url)
            assert response.status_code == 200, response.text
            task = response.json()[key] if key else response.json()
            seen.append(task)
            return task["status"] in ended

        await eventually(ended_now, timeout=10, what=f"{url} to end")
        return seen


@asynccontextmanager
async def running(config: MockConfig | None = None) -> AsyncIterator[Mock]:
    app = create_mock_app(config)
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as client:
        yield Mock(app, client)


def in_order(statuses: list[str]) -> bool:
    ranks = [ORDER.index(status) for status in statuses]
    return ranks == sorted(ranks)
