"""What the task-API tests share: put bodies for Midjourney and Suno jobs, and what the mock
upstream received."""

from __future__ import annotations

from typing import Any

IMAGINE = "/mj/submit/imagine"
UPLOAD = "/mj/submit/upload-discord-images"
MUSIC = "/suno/submit/music"
MJ_READ = "/mj/task/list-by-condition"
SUNO_READ = "/suno/fetch"


def job(
    endpoint: str,
    mode: str,
    url: str | None = None,
    timeout: int | None = None,
    queue: str = "art",
    **mock: Any,
) -> dict[str, Any]:
    """A put on `queue` (level 1 for callbacks, else 0) with the mock controls `mock`."""
    data: dict[str, Any] = {"prompt": "a cat in a hat", "mock": mock}
    if endpoint == IMAGINE:
        data["botType"] = "MID_JOURNEY"
    body: dict[str, Any] = {"queue": queue, "endpoint": endpoint, "data": data}
    body |= {"response_mode": mode, "level": 1 if mode == "callback" else 0}
    if url is not None:
        body["callback_url"] = url
    if timeout is not None:
        body["timeout"] = timeout
    return body


def requests_to(mock_upstream: tuple[str, Any], path: str) -> list[Any]:
    """The bodies of the requests the mock received at `path`."""
    return [r.body for r in mock_upstream[1].state.mock_requests if r.path == path]


def read_ids(mock_upstream: tuple[str, Any], path: str) -> list[str]:
    """Every task id the follower asked the mock about, one per id per read."""
    return [task_id for body in requests_to(mock_upstream, path) for task_id in body["ids"]]
