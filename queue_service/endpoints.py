"""The endpoints the service serves: the API accepts jobs for these, workers adapt each one.
The OpenAI-style ones also have drop-in routes of the same path on the API.

Kept apart from both so the API never imports the workers; `workers/adapters` has exactly one
adapter per endpoint here (a test holds them together).
"""

from __future__ import annotations

import re

OPENAI_STYLE_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/audio/speech",
        "/v1/realtime/sessions",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/images/edits",
        "/v1/images/variations",
    }
)

MIDJOURNEY, SUNO = "midjourney", "suno"
TASK_API_ENDPOINTS = {
    **{
        path: MIDJOURNEY
        for path in (
            "/mj/submit/imagine",
            "/mj/submit/blend",
            "/mj/submit/describe",
            "/mj/submit/action",
            "/mj/submit/modal",
            "/mj/submit/shorten",
            "/mj/submit/upload-discord-images",
            "/mj/insight-face/swap",
        )
    },
    **{
        path: SUNO
        for path in (
            "/suno/submit/music",
            "/suno/submit/lyrics",
            "/suno/submit/concat",
            "/suno/uploads/audio-url",
        )
    },
}
"""Endpoints of upstream task APIs (Midjourney-proxy, Suno-API) -> which API: the submit
answers with the upstream's own task id, and workers follow that task until it ends (all but
`UNFOLLOWED_TASK_ENDPOINTS`)."""

UNFOLLOWED_TASK_ENDPOINTS = frozenset({"/mj/submit/upload-discord-images"})
"""Task-API endpoints answered at once, whose answer is the job's result (nothing to follow)."""

SERVED_ENDPOINTS = OPENAI_STYLE_ENDPOINTS.union(TASK_API_ENDPOINTS)

MB = 1024 * 1024
FILE_ENDPOINTS = {
    "/v1/audio/transcriptions": 25 * MB,
    "/v1/audio/translations": 25 * MB,
    "/v1/images/edits": 50 * MB,
    "/v1/images/variations": 50 * MB,
}
"""Endpoints that take files (sent upstream as multipart forms), with the largest file each
takes: OpenAI's 25 MB for audio; 50 MB an image (gpt-image-1's; older models refuse more than
4 MB themselves)."""

_TASK_READ = (
    "a task-API read is not queued: workers read tasks with it; follow a job with "
    "GET /v1/queue/{task_id}"
)
UNQUEUEABLE = {
    "/v1/realtime": (
        "/v1/realtime is a live WebSocket (or WebRTC) session of two-way audio and events, which "
        "a queue cannot hold: connect to the upstream directly, with an ephemeral key minted "
        "through the queue by /v1/realtime/sessions"
    ),
    "/mj/task/list-by-condition": _TASK_READ,
    "/suno/fetch": _TASK_READ,
}
"""Endpoints that cannot be queued, and why (a put on one answers 400 saying so; the API's
drop-in routes answer the same at these paths)."""

UNQUEUEABLE_PATTERNS = {
    re.compile(r"/mj/task/[^/]+/fetch"): _TASK_READ,
    re.compile(r"/suno/fetch/[^/]+"): _TASK_READ,
    re.compile(r"/mj/task/[^/]+/image-seed"): (
        "a read of a finished Midjourney task: ask the upstream directly"
    ),
}
"""Unqueueable endpoints with a task id in their path (a put names the path as sent)."""


def unqueueable(endpoint: str) -> str | None:
    """Why a put cannot queue a job on `endpoint`; None when nothing says it cannot."""
    if endpoint in UNQUEUEABLE:
        return UNQUEUEABLE[endpoint]
    for pattern, why in UNQUEUEABLE_PATTERNS.items():
        if pattern.fullmatch(endpoint):
            return why
    return None
