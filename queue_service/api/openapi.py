"""The OpenAPI document of the HTTP API (`GET /openapi.json`), built from the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from queue_service.endpoints import OPENAI_STYLE_ENDPOINTS
from queue_service.models import PutRequest, TaskView

from .openapi_compat import compat_paths


class ErrorEnvelope(BaseModel):
    code: int
    message: str
    timestamp: int


class PutAnswer(BaseModel):
    code: int
    timestamp: int
    data: str


class TaskAnswer(BaseModel):
    code: int
    timestamp: int
    data: TaskView


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _errors(*codes: int, upstream: bool = False) -> dict[str, Any]:
    """Error responses: our envelope, or (`upstream`) the upstream's own error body that
    blocking and streaming puts pass through with its status."""
    reasons = {
        400: "invalid request",
        401: "missing or invalid API key",
        403: "the key may not use this queue",
        404: "no such task (for this tenant)",
        408: "the job did not finish within its timeout (it ended `timeout`)",
        409: "the task already finished; an Idempotency-Key used for another request; or no "
        "room for a new queue (QUEUE_MAX_QUEUES)",
        413: "body too large",
        415: "not JSON",
        429: "rate limit or queue full (see Retry-After)",
        503: "Redis unreachable",
    }
    schema: dict[str, Any] = _ref(ErrorEnvelope)
    if upstream:
        schema = {"anyOf": [schema, {"description": "the upstream's own error body"}]}
    return {str(code): _json(schema, reasons[code]) for code in codes}


def _put_schema(schema: dict[str, Any], endpoints: frozenset[str], max_timeout: int) -> None:
    """Say in the schema what the validators check: served endpoints, levels, timeouts, and
    which fields each response mode needs."""
    properties = schema["properties"]
    properties["endpoint"] = {"type": "string", "enum": sorted(endpoints)}
    properties["level"] = {"type": "integer", "enum": [0, 1]}
    properties["timeout"] = {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": max_timeout}, {"type": "null"}]
    }
    properties["callback_url"] = {
        "anyOf": [{"type": "string", "format": "uri", "pattern": "^https?://"}, {"type": "null"}],
        "description": "public http(s) URL (inner addresses are refused unless allowed)",
    }
    schema["allOf"] = [
        {
            "if": {"properties": {"response_mode": {"const": "callback"}}},
            "then": {
                "required": ["callback_url"],
                "properties": {"callback_url": {"type": "string"}},
            },
        },
        {
            "if": {
                "required": ["response_mode"],
                "properties": {"response_mode": {"enum": ["blocking", "streaming"]}},
            },
            "then": {"properties": {"level": {"const": 0}}},
        },
    ]


def _components(endpoints: frozenset[str], max_timeout: int) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (PutRequest, ErrorEnvelope, PutAnswer, TaskAnswer):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    _put_schema(schemas["PutRequest"], endpoints, max_timeout)
    return {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}


TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "TASK-{queue_id}-{level}-{mode}-{yyMMddHHmmss}-{instance}-{serial}",
}


QUEUE = {"name": "queue", "in": "path", "required": True, "schema": {"type": "string"}}

USAGE_FILTERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": text,
    }
    for name, text in (
        ("tenant", "only this tenant (admins; others read their own only: another is 403)"),
        ("queue", "only this queue"),
        ("from", "window start: epoch seconds or ISO-8601 (default: `to` minus 24 h)"),
        ("to", "window end: epoch seconds or ISO-8601 (default: now); hours are whole"),
    )
]

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": (
        "Makes a retried put safe: the same key (per tenant and queue) with the same request "
        "answers the first task's id and creates nothing; with another request, 409. A key "
        "lives as long as its task. Blocking and streaming puts sent again answer 409 with "
        "the first task's id in X-Task-Id."
    ),
}


def openapi_document(endpoints: frozenset[str], max_timeout: int) -> dict[str, Any]:
    document = _queue_document(endpoints, max_timeout)
    document["paths"] |= compat_paths(endpoints & OPENAI_STYLE_ENDPOINTS)
    return document


def _queue_document(endpoints: frozenset[str], max_timeout: int) -> dict[str, Any]:
    put_answer = {
        "description": (
            "callback: the task id; blocking: the upstream's own body (JSON, or bytes with its "
            "content type) and status; streaming: the upstream's SSE events"
        ),
        "content": {
            "application/json": {"schema": {"oneOf": [_ref(PutAnswer), {}]}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "queue-service",
            "version": "0.1.0",
            "description": "A priority task queue for AI API calls. Served endpoints: "
            + ", ".join(sorted(endpoints)),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/queue/put": {
                "post": {
                    "summary": "Put a job on a queue",
                    "operationId": "put",
                    "parameters": [IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(PutRequest)}},
                    },
                    "responses": {
                        "200": put_answer,
                        **_errors(400, 401, 403, 408, 409, 413, 415, 429, 503, upstream=True),
                        "default": {"description": "blocking mode: the upstream's error status"},
                    },
                }
            },
            "/v1/queue/{task_id}": {
                "get": {
                    "summary": "A task's status and result",
                    "operationId": "get_task",
                    "parameters": [TASK_ID],
                    "responses": {
                        "200": _json(_ref(TaskAnswer), "the task"),
                        **_errors(401, 404, 429, 503),
                    },
                }
            },
            "/v1/queue/{task_id}/cancel": {
                "post": {
                    "summary": "Cancel a queued or running task",
                    "operationId": "cancel_task",
                    "parameters": [TASK_ID],
                    "responses": {
                        "200": _json(_ref(TaskAnswer), "the task, now cancelled"),
                        **_errors(401, 404, 409, 429, 503),
                    },
                }
            },
            "/v1/queue/{queue}/stats": {
                "get": {
                    "summary": "A queue's figures (admins: any queue; others: queues they use)",
                    "operationId": "queue_stats",
                    "parameters": [QUEUE],
                    "responses": {
                        "200": _json({"type": "object"}, "waiting, in flight, totals, workers"),
                        **_errors(401, 403, 404, 429, 503),
                    },
                }
            },
            "/v1/queue/usage": {
                "get": {
                    "summary": "Requests and tokens per tenant, queue, model and route",
                    "operationId": "usage",
                    "parameters": USAGE_FILTERS,
                    "responses": {
                        "200": _json({"type": "object"}, "from, to, rows, totals"),
                        **_errors(400, 401, 403, 429, 503),
                    },
                }
            },
            **{
                f"/v1/queue/{{queue}}/{action}": {
                    "post": {
                        "summary": f"{action.capitalize()} a queue (admin keys only)",
                        "operationId": f"{action}_queue",
                        "parameters": [QUEUE],
                        "responses": {
                            "200": _json({"type": "object"}, f"the queue, {action}d"),
                            **_errors(401, 403, 404, 429, 503),
                        },
                    }
                }
                for action in ("pause", "resume")
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (keys on: an admin key or the scrape token)",
                    "responses": {
                        "200": {
                            "description": "text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 403, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Redis is reachable",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}, "ready"),
                        **_errors(503),
                    },
                }
            },
        },
        "components": _components(endpoints, max_timeout),
    }
