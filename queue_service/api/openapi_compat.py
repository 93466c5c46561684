"""The OpenAPI paths of the SDK-compatible routes: the model endpoints, `/v1/models`, Files,
Batches and Anthropic's Message Batches. Their bodies are the upstream's own (OpenAI's and
Anthropic's API references describe them); errors come in each SDK's dialect."""

from __future__ import annotations

from typing import Any

from queue_service.endpoints import UNQUEUEABLE

QUEUE_HEADERS = [
    {
        "name": "X-Queue",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the queue (else the key's default_queue, else QUEUE_DEFAULT_QUEUE)",
    },
    {
        "name": "X-Queue-Level",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "enum": [0]},
        "description": "0 only: these calls wait for their answer, so they run online",
    },
    {
        "name": "X-Queue-Timeout",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
        "description": "seconds until the job is given up (it ends `timeout`)",
    },
]
OPENAI_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {},
                "code": {},
            },
        }
    },
}
ANTHROPIC_ERROR = {
    "type": "object",
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
ANY_JSON = {"application/json": {"schema": {"type": "object"}}}


def _operation(
    summary: str, *, anthropic: bool = False, body: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    error = ANTHROPIC_ERROR if anthropic else OPENAI_ERROR
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "as the API it imitates answers", "content": ANY_JSON},
            "default": {
                "description": "an error in the SDK's dialect (or the upstream's own)",
                "content": {"application/json": {"schema": error}},
            },
        },
        **extra,
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def _path_id(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def compat_paths(endpoints: frozenset[str]) -> dict[str, Any]:
    """The SDK-compatible routes' paths."""
    paths: dict[str, Any] = {}
    for endpoint in sorted(endpoints):
        anthropic = endpoint == "/v1/messages"
        summary = (
            f"{endpoint} as the upstream serves it, through the queue "
            '(`"stream": true` relays the SSE events); the task id in X-Task-Id'
        )
        paths[endpoint] = {
            "post": _operation(
                summary, anthropic=anthropic, body=ANY_JSON, parameters=QUEUE_HEADERS
            )
        }
    for endpoint, why in UNQUEUEABLE.items():
        paths[endpoint] = {
            method: _operation(f"not queued: always 400 ({why})") for method in ("get", "post")
        }
    multipart = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "purpose": {"const": "batch"},
                },
            }
        }
    }
    file_id, batch_id = _path_id("file_id"), _path_id("batch_id")
    paths |= {
        "/v1/models": {"get": _operation("the models the routing file names, or the upstream's")},
        "/v1/files": {
            "post": _operation("upload a batch input file", body=multipart),
            "get": _operation("the key's files"),
        },
        "/v1/files/{file_id}": {
            "get": _operation("a file", parameters=file_id),
            "delete": _operation("delete a file", parameters=file_id),
        },
        "/v1/files/{file_id}/content": {
            "get": _operation("a file's content (streamed)", parameters=file_id)
        },
        "/v1/batches": {
            "post": _operation("run a file of requests as level-1 jobs", body=ANY_JSON),
            "get": _operation("the key's batches, newest first (after, limit)"),
        },
        "/v1/batches/{batch_id}": {"get": _operation("a batch", parameters=batch_id)},
        "/v1/batches/{batch_id}/cancel": {
            "post": _operation("cancel a batch", parameters=batch_id)
        },
        "/v1/messages/batches": {
            "post": _operation("an Anthropic message batch", anthropic=True, body=ANY_JSON),
            "get": _operation("the key's message batches", anthropic=True),
        },
        "/v1/messages/batches/{batch_id}": {
            "get": _operation("a message batch", anthropic=True, parameters=batch_id)
        },
        "/v1/messages/batches/{batch_id}/cancel": {
            "post": _operation("cancel a message batch", anthropic=True, parameters=batch_id)
        },
        "/v1/messages/batches/{batch_id}/results": {
            "get": _operation("its results as JSONL", anthropic=True, parameters=batch_id)
        },
    }
    return paths
