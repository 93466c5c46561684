"""A Suno-API task as the mock keeps it, and the task object it answers for it.

A clip links to the mock's own files once it streams: a silent MP3 (`/_mock/audio/`, served
here) and a cover (`/_mock/images/`), so a client can follow every link it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .images import colour_of
from .speech import render
from .task_lifecycle import FAILURE, IN_PROGRESS, NOT_START, SUBMITTED, SUCCESS, Lifecycle, Phase

CLIP_SECONDS = 2.0
"""How long every clip is: its `metadata.duration` and its MP3."""
DEFAULT_MODEL = "chirp-v3-0"
"""The model of a submit naming none (`mv`), as the Suno-API docs say."""
ITEM_STATUS = {
    NOT_START: "submitted",
    SUBMITTED: "submitted",
    IN_PROGRESS: "streaming",
    SUCCESS: "complete",
    FAILURE: "error",
}
"""The status of a clip (or of lyrics) by the status of its task."""
_AUDIO_NAME = re.compile(r"[0-9A-Za-z-]{1,64}")


@dataclass(frozen=True, slots=True)
class Clip:
    id: str
    title: str
    tags: str
    prompt: str
    gpt_description_prompt: str | None
    model_name: str


@dataclass(frozen=True, slots=True)
class SunoTask:
    id: str
    action: str
    """MUSIC, LYRICS, CONCAT or UPLOAD."""
    notify_hook: str
    prompt: str
    """What LYRICS are written about."""
    clips: tuple[Clip, ...]
    """Two for MUSIC, one for CONCAT and UPLOAD, none for LYRICS."""
    life: Lifecycle


def lyrics(about: str) -> str:
    """The lyrics the mock writes (for LYRICS, and for MUSIC from a description)."""
    return (
        f"[Verse]\nA mock song about {about}\nSung by no one at all\n\n"
        f"[Chorus]\n{about}, {about}\nThe mock upstream's call"
    )


def lyrics_title(about: str) -> str:
    return about[:40].title()


def major_version(model_name: str) -> str:
    """ "v3" for "chirp-v3-5", as Suno answers it."""
    match = re.search(r"v\d+", model_name)
    return match.group() if match else "v3"


def _seconds(moment: float | None) -> int:
    return 0 if moment is None else int(moment)


def _clip_object(clip: Clip, phase: Phase, fail: str, base_url: str) -> dict[str, Any]:
    status = ITEM_STATUS[phase.status]
    linked = status in ("streaming", "complete")
    image = f"{base_url}_mock/images/{colour_of(clip.id, 0)}.png" if linked else ""
    return {
        "id": clip.id,
        "title": clip.title,
        "status": status,
        "metadata": {
            "tags": clip.tags,
            "prompt": clip.prompt,
            "duration": CLIP_SECONDS if status == "complete" else None,
            "error_type": "mock_failure" if status == "error" else None,
            "error_message": fail if status == "error" else None,
            "audio_prompt_id": None,
            "gpt_description_prompt": clip.gpt_description_prompt,
        },
        "audio_url": f"{base_url}_mock/audio/{clip.id}.mp3" if linked else "",
        "image_url": image,
        "video_url": "",
        "model_name": clip.model_name,
        "image_large_url": image,
        "major_model_version": major_version(clip.model_name),
    }


def task_object(task: SunoTask, base_url: str) -> dict[str, Any]:
    """The task as `/suno/fetch` answers it."""
    phase = task.life.phase()
    fail = task.life.fail or ""
    data: Any
    if task.action == "LYRICS":
        status = ITEM_STATUS[phase.status]
        done = status == "complete"
        data = {
            "id": task.id,
            "text": lyrics(task.prompt) if done else "",
            "title": lyrics_title(task.prompt) if done else "",
            "status": status,
        }
    else:
        data = [_clip_object(clip, phase, fail, base_url) for clip in task.clips]
    return {
        "task_id": task.id,
        "notify_hook": task.notify_hook,
        "action": task.action,
        "status": phase.status,
        "fail_reason": fail if phase.status == FAILURE else "",
        "submit_time": _seconds(task.life.submitted),
        "start_time": _seconds(phase.started),
        "finish_time": _seconds(phase.finished),
        "progress": phase.progress,
        "data": data,
    }


async def _audio_file(request: Request) -> Response:
    if not _AUDIO_NAME.fullmatch(request.path_params["clip"]):
        return Response(b"not found", 404)
    return Response(render("mp3", CLIP_SECONDS), media_type="audio/mpeg")


AUDIO_FILES = Route("/_mock/audio/{clip}.mp3", _audio_file, methods=["GET"])
"""Where `audio_url`s point: CLIP_SECONDS of silence."""
