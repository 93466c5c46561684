"""A Midjourney-proxy task as the mock keeps it, and the task object it answers for it.

Images are the mock's own solid-colour PNGs (`/_mock/images/`): a preview per progress step
while IN_PROGRESS, the final image at SUCCESS, so a client can follow every link it is given.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from .images import colour_of
from .task_lifecycle import FAILURE, IN_PROGRESS, SUCCESS, Lifecycle

DESCRIBED = "\n\n".join(
    f"{number} a mock description of the image, variant {index} --ar 1:1"
    for index, number in enumerate(("1️⃣", "2️⃣", "3️⃣", "4️⃣"), start=1)
)
"""What a DESCRIBE task's prompt becomes at SUCCESS (the proxy answers four prompts)."""


@dataclass(frozen=True, slots=True)
class MjTask:
    id: str
    action: str
    """IMAGINE, BLEND, DESCRIBE, UPSCALE, VARIATION, REROLL, PAN, ZOOM, MODAL, SHORTEN,
    SWAP_FACE or ACTION."""
    prompt: str
    description: str
    """Like the proxy's: the command it stands for, e.g. "/imagine a cat"."""
    state: str
    """The submit's `state`, echoed."""
    life: Lifecycle


def new_task_id(taken: Container[str]) -> str:
    """A 16-digit id like the proxy's, not in `taken`."""
    while True:
        candidate = str(10**15 + secrets.randbelow(9 * 10**15))
        if candidate not in taken:
            return candidate


def _digest(task_id: str) -> bytes:
    return hashlib.sha256(task_id.encode()).digest()


def message_hash(task_id: str) -> str:
    """The Discord message hash in the task's button ids (a UUID derived from its id)."""
    return str(uuid.UUID(bytes=_digest(task_id)[:16]))


def image_seed(task_id: str) -> str:
    """The seed of the task's image: digits, fixed per task."""
    return str(int.from_bytes(_digest(task_id)[16:20], "big"))


def buttons(task_id: str) -> list[dict[str, Any]]:
    """U1-U4 and V1-V4, the buttons of a finished grid."""
    hashed = message_hash(task_id)
    return [
        {
            "customId": f"MJ::JOB::{kind}::{number}::{hashed}",
            "emoji": "",
            "label": f"{letter}{number}",
            "style": 2,
            "type": 2,
        }
        for letter, kind in (("U", "upsample"), ("V", "variation"))
        for number in range(1, 5)
    ]


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1000)


def task_object(task: MjTask, base_url: str) -> dict[str, Any]:
    """The task as `/mj/task/{id}/fetch` and `/mj/task/list-by-condition` answer it."""
    phase = task.life.phase()
    image_url = ""
    if phase.status == IN_PROGRESS:
        image_url = f"{base_url}_mock/images/{colour_of(task.id, phase.step)}.png"
    elif phase.status == SUCCESS:
        image_url = f"{base_url}_mock/images/{colour_of(task.id, 0)}.png"
    prompt = task.prompt
    if task.action == "DESCRIBE" and phase.status == SUCCESS:
        prompt = DESCRIBED
    return {
        "action": task.action,
        "buttons": buttons(task.id) if phase.status == SUCCESS else [],
        "description": task.description,
        "failReason": (task.life.fail or "") if phase.status == FAILURE else "",
        "finishTime": _ms(phase.finished),
        "id": task.id,
        "imageUrl": image_url,
        "progress": phase.progress,
        "prompt": prompt,
        "promptEn": prompt,
        "properties": {"finalPrompt": prompt} if phase.status == SUCCESS else {},
        "startTime": _ms(phase.started),
        "state": task.state,
        "status": phase.status,
        "submitTime": _ms(task.life.submitted),
    }
